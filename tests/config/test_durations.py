"""Durations: fixed units, calendar months and years, and the ambiguous bare `m`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbookd.config.durations import Months, format_duration, parse_duration, parse_span, shift

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(("text", "span"), [
    ("45s", timedelta(seconds=45)), ("30min", timedelta(minutes=30)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("3mo", Months(3)), ("1y", Months(12)),
    (" 2 d ", timedelta(days=2)),
])
def test_every_unit(text: str, span: object) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize("text", ["3m", "10m"])
def test_a_bare_m_is_refused_with_both_readings(text: str) -> None:
    number = text[:-1]
    with pytest.raises(ValueError, match=f"did you mean {number}min or {number}mo"):
        parse_span(text)


@pytest.mark.parametrize("text", ["", "7", "d", "1.5d", "-1d", "7 days", 7, None])
def test_other_shapes_are_refused_with_the_units(text: object) -> None:
    with pytest.raises(ValueError, match="45s, 30min, 12h, 7d, 2w, 3mo, 1y"):
        parse_span(text)


def test_settings_take_fixed_lengths_only() -> None:
    assert parse_duration("15min") == timedelta(minutes=15)
    with pytest.raises(ValueError, match="months and years vary in length"):
        parse_duration("1mo")


@pytest.mark.parametrize(("start", "months", "end"), [
    (datetime(2026, 1, 31, 9, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, tzinfo=UTC)),
    (datetime(2028, 1, 31, 9, tzinfo=UTC), 1, datetime(2028, 2, 29, 9, tzinfo=UTC)),
    (datetime(2026, 11, 15, 9, tzinfo=UTC), 3, datetime(2027, 2, 15, 9, tzinfo=UTC)),
])
def test_months_follow_the_calendar_and_clamp_to_the_month_end(start: datetime, months: int,
                                                             end: datetime) -> None:
    assert Months(months).after(start, ZoneInfo("UTC")) == end


def test_months_before_clamp_too() -> None:
    end_of_march = datetime(2026, 3, 31, 9, tzinfo=UTC)
    assert Months(1).before(end_of_march, ZoneInfo("UTC")) == datetime(2026, 2, 28, 9, tzinfo=UTC)


def test_a_month_keeps_the_local_time_across_daylight_saving() -> None:
    # 09:00 in New York on 15 February (EST, UTC-5) is 09:00 on 15 March (EDT, UTC-4)
    start = datetime(2026, 2, 15, 14, tzinfo=UTC)
    assert shift(start, Months(1), NY) == datetime(2026, 3, 15, 13, tzinfo=UTC)
    assert shift(start, 86400, NY) == start + timedelta(days=1)


def test_formatting_uses_the_same_units() -> None:
    assert [format_duration(v) for v in (timedelta(minutes=15), timedelta(days=14), 90, Months(3), Months(24))] == [
        "15min", "2w", "90s", "3mo", "2y"]
    assert format_duration(timedelta(days=14), largest="d") == "14d"
