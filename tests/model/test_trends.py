"""Trend conditions: `health_score: {dropped_by: ...}` and `rose_by`, parsed and evaluated on the score history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from playbookd.model import fields as F
from playbookd.model.conditions import FieldTypes, Leaf, Trend, parse_condition_data
from playbookd.model.evaluation import evaluate, explain

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
UTC_ZONE = ZoneInfo("UTC")
KNOWN = FieldTypes({"health_score": F.DECIMAL, "nps": F.INTEGER})
DROP = {"health_score": {"dropped_by": {"points": 15, "within": "30d"}}}
RISE = {"health_score": {"rose_by": {"points": 10, "within": "7d"}}}


def cond(data: dict[str, Any]) -> Any:
    parsed, problems = parse_condition_data(data, "p.yaml", KNOWN)
    assert problems == []
    return parsed


def record(score: float | None, *rows: tuple[date, float | None, float | None]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "a", "segment": "s", "_changes": {}, "_health_history": rows}
    if score is not None:
        out["health_score"] = score
    return out


def test_parsed_into_a_trend_with_its_window() -> None:
    assert cond(DROP) == Leaf("health_score", "dropped_by", Trend(15.0, 30 * 86400))
    assert str(Trend(15.0, 30 * 86400)) == "{points: 15, within: 30d}"


@pytest.mark.parametrize(("data", "why"), [
    ({"nps": {"dropped_by": {"points": 2, "within": "30d"}}}, "works on health_score"),
    ({"health_score": {"dropped_by": 15}}, "takes {points: N, within: DURATION}"),
    ({"health_score": {"rose_by": {"points": 0, "within": "30d"}}}, "points is a number above 0"),
    ({"health_score": {"rose_by": {"points": 5, "within": "30m"}}}, "did you mean 30min or 30mo"),
])
def test_bad_trends_are_refused(data: dict[str, Any], why: str) -> None:
    _, problems = parse_condition_data(data, "p.yaml", KNOWN)
    assert len(problems) == 1 and why in problems[0].message, problems


def test_dropped_by_is_the_highest_score_in_the_window_minus_the_current_one() -> None:
    fell = record(60.0, (TODAY - timedelta(days=20), 80.0, 75.0), (TODAY - timedelta(days=2), 75.0, 60.0))
    assert evaluate(cond(DROP), fell, NOW, UTC_ZONE)
    assert explain(cond(DROP), fell, NOW, UTC_ZONE).lines() == [
        "✓ health_score dropped_by {points: 15, within: 30d} (actual: 60.0, highest 80.0, lowest 60.0 in the window)"]
    fourteen = record(61.0, (TODAY - timedelta(days=20), 75.0, 75.0), (TODAY, 75.0, 61.0))
    assert not evaluate(cond(DROP), fourteen, NOW, UTC_ZONE)


def test_decimal_arithmetic_on_scores_with_one_decimal() -> None:
    # 72.3 - 57.3 is 14.999999999999993 in binary floats
    assert evaluate(cond(DROP), record(57.3, (TODAY - timedelta(days=1), 72.3, 57.3)), NOW, UTC_ZONE)


def test_a_drop_before_the_window_does_not_count() -> None:
    old = record(50.0, (TODAY - timedelta(days=31), 90.0, 50.0))
    assert not evaluate(cond(DROP), old, NOW, UTC_ZONE)
    assert evaluate(cond(DROP), record(50.0, (TODAY - timedelta(days=30), 90.0, 50.0)), NOW, UTC_ZONE)


def test_rose_by_uses_the_lowest_score_in_the_window() -> None:
    assert evaluate(cond(RISE), record(70.0, (TODAY - timedelta(days=3), 70.0, 55.0)), NOW, UTC_ZONE)
    assert not evaluate(cond(RISE), record(70.0, (TODAY - timedelta(days=3), 70.0, 65.0)), NOW, UTC_ZONE)


def test_no_current_score_or_no_history_is_no_trend() -> None:
    assert not evaluate(cond(DROP), record(None, (TODAY, 90.0, 10.0)), NOW, UTC_ZONE)
    assert not evaluate(cond(DROP), record(40.0), NOW, UTC_ZONE)
    assert evaluate(cond({"not": DROP}), record(40.0), NOW, UTC_ZONE)


def test_the_window_is_counted_in_days_of_the_configured_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # 09:00 UTC is 18:00 in Tokyo, the same day
    edge = record(50.0, (TODAY - timedelta(days=30), 90.0, 50.0))
    assert evaluate(cond(DROP), edge, NOW, tokyo)
    late = NOW + timedelta(hours=16)  # the next day in Tokyo: day -30 has left the window
    assert not evaluate(cond(DROP), edge, late, tokyo)
