"""Health scores computed from config.yaml's health section: measures, re-normalised weights, rounding, colours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from playbookd.config.health import HealthSettings
from playbookd.model import fields as F
from playbookd.model.conditions import FieldTypes
from playbookd.model.health import HealthRules, compute, health_fields
from playbookd.model.health_rules import build_rules

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
ISSUE = """
measures:
  - {name: adoption, weight: 40, field: seat_utilization,
     bands: [{gte: 80, score: 100}, {gte: 50, score: 60}, {score: 20}]}
  - {name: sentiment, weight: 20, when: {nps: {gte: 9}}, score: 100, else: 40}
  - {name: support, weight: 20, field: open_escalations,
     bands: [{eq: 0, score: 100}, {lte: 2, score: 50}, {score: 0}]}
  - {name: csm_view, weight: 20, field: usage_fit, map: {"yes": 100, investigate: 50, "no": 0}}
colors:
  high_touch: {red: {lt: 60}, yellow: {lt: 80}}
  default:    {red: {lt: 40}, yellow: {lt: 70}}
"""
TYPES: dict[str, str | None] = {"seat_utilization": F.INTEGER, "nps": F.INTEGER, "open_escalations": F.INTEGER,
                                "usage_fit": F.STRING, "segment": F.STRING, "score_a": F.DECIMAL,
                                "score_b": F.DECIMAL, "renewal_date": F.DATE}


def rules(text: str = ISSUE) -> HealthRules:
    built, problems = build_rules(HealthSettings.model_validate(yaml.safe_load(text)), FieldTypes(TYPES), UTC_ZONE,
                                  "config.yaml")
    assert problems == []
    return built


def account(segment: str = "tech_touch", **values: Any) -> dict[str, Any]:
    return {"id": "ACC-1", "segment": segment, "_changes": {}, **values}


def test_every_measure_present_is_the_weighted_mean() -> None:
    health = compute(rules(), account(seat_utilization=55, nps=10, open_escalations=1, usage_fit="investigate"), NOW)
    # (60*40 + 100*20 + 50*20 + 50*20) / 100
    assert health.score == Decimal("64.0") and health.color == "yellow"
    assert [(m.name, m.value, m.score, m.weight) for m in health.measures] == [
        ("adoption", 55, Decimal(60), Decimal("40.0")), ("sentiment", 10, Decimal(100), Decimal("20.0")),
        ("support", 1, Decimal(50), Decimal("20.0")), ("csm_view", "investigate", Decimal(50), Decimal("20.0"))]


def test_a_missing_field_leaves_its_measure_out_and_the_other_weights_are_renormalised() -> None:
    health = compute(rules(), account(seat_utilization=90, open_escalations=3), NOW)
    # adoption 100 weighs 40 of 60, support 0 weighs 20 of 60
    assert health.score == Decimal("66.7")
    assert [(m.name, m.score, m.weight) for m in health.measures] == [
        ("adoption", Decimal(100), Decimal("66.7")), ("sentiment", None, Decimal(0)),
        ("support", Decimal(0), Decimal("33.3")), ("csm_view", None, Decimal(0))]
    assert health.as_json("ACC-1", "tech_touch")["measures"][1] == {"name": "sentiment", "value": None,
                                                                    "score": None, "weight": 0.0}


def test_every_measure_missing_gives_no_score_and_no_colour() -> None:
    health = compute(rules(), account(), NOW)
    assert (health.score, health.color) == (None, None)
    assert health.fields() == {"health_score": None, "health_color": None}
    assert all(m.score is None and m.weight == 0 for m in health.measures)


def test_bands_take_the_first_match_and_the_last_band_the_rest() -> None:
    by_value = {v: compute(rules(), account(open_escalations=v), NOW).measures[2].score for v in (0, 1, 2, 3, 9)}
    assert by_value == {0: 100, 1: 50, 2: 50, 3: 0, 9: 0}


def test_a_value_not_in_the_map_leaves_the_measure_out() -> None:
    health = compute(rules(), account(usage_fit="Yes", open_escalations=0), NOW)
    assert health.measures[3].score is None and health.measures[3].value == "Yes"
    assert health.score == Decimal("100.0")


def test_the_score_is_rounded_half_up_with_decimals_not_floats() -> None:
    text = """
measures:
  - {name: a, weight: 1, field: score_a, bands: [{gte: 72.25, score: 72.2}, {score: 0}]}
  - {name: b, weight: 1, field: score_b, bands: [{gte: 0, score: 72.3}, {score: 0}]}
colors: {default: {red: {lt: 72.3}, yellow: {lt: 80}}}
"""
    health = compute(rules(text), account(score_a=80, score_b=1), NOW)
    assert round(72.25, 1) == 72.2, "binary rounding would say 72.2"
    assert health.score == Decimal("72.3") and health.color == "yellow", "half-up, and the colour of 72.3"


def test_the_colour_follows_the_segment_limits_or_default() -> None:
    values = {"seat_utilization": 55, "nps": 3, "open_escalations": 0, "usage_fit": "yes"}  # 24+8+20+20 = 72
    assert compute(rules(), account("high_touch", **values), NOW).color == "yellow"
    assert compute(rules(), account("low_touch", **values), NOW).color == "green"
    low = {**values, "usage_fit": "no", "open_escalations": 4}  # 24+8+0+0 = 32
    assert compute(rules(), account("high_touch", **low), NOW).color == "red"
    assert compute(rules(), account("tech_touch", **low), NOW).color == "red"
    edge = {"seat_utilization": 55, "nps": 10, "open_escalations": 0, "usage_fit": "yes"}  # 24+20+20+20 = 84
    assert compute(rules(), account("high_touch", **{**edge, "usage_fit": "investigate"}), NOW).score == 74
    assert compute(rules(), account("high_touch", **{**edge, "seat_utilization": 20}), NOW).score == 68


def test_a_when_measure_reads_its_fields_and_is_left_out_without_them() -> None:
    text = """
measures:
  - {name: renewal, weight: 1, when: {renewal_date: {within_next: 90d}}, score: 30, else: 90}
colors: {default: {red: {lt: 40}, yellow: {lt: 70}}}
"""
    soon = compute(rules(text), account(renewal_date=date(2026, 12, 20)), NOW)
    late = compute(rules(text), account(renewal_date=date(2027, 6, 1)), NOW)
    assert (soon.score, soon.color, late.score, late.color) == (30, "red", 90, "green")
    assert compute(rules(text), account(), NOW).score is None


@pytest.mark.parametrize(("measure", "problem"), [
    ("{name: a, weight: 1, field: seat_utilisation, bands: [{score: 1}]}",
     "unknown field 'seat_utilisation'; did you mean 'seat_utilization'?"),
    ("{name: a, weight: 1, field: usage_fit, bands: [{between: 5, score: 1}, {score: 0}]}",
     "band: usage_fit between: takes a list of two values"),
    ("{name: a, weight: 1, field: seat_utilization, map: {high: 1}}", "map key 'high': expected an integer"),
    ("{name: a, weight: 1, when: {nps: {changed: true}}, score: 1, else: 0}", "'changed' has no meaning"),
    ("{name: a, weight: 1, when: {health_color: red}, score: 1, else: 0}", "cannot read health_color"),
    ("{name: a, weight: 1, field: health_score, bands: [{score: 1}]}", "cannot read health_score"),
])
def test_measures_are_checked_against_the_known_fields(measure: str, problem: str) -> None:
    settings = HealthSettings.model_validate(yaml.safe_load(
        f"measures: [{measure}]\ncolors: {{default: {{red: {{lt: 1}}, yellow: {{lt: 2}}}}}}"))
    known = FieldTypes({**TYPES, "health_score": F.DECIMAL, "health_color": F.STRING})
    _, problems = build_rules(settings, known, UTC_ZONE, "config.yaml")
    assert any(problem in p.message for p in problems), problems


def test_what_sync_stores_is_what_the_breakdown_says() -> None:
    for values in ({}, {"seat_utilization": 55}, {"nps": 9, "usage_fit": "no", "open_escalations": 2},
                   {"seat_utilization": 80, "nps": 3, "open_escalations": 7, "usage_fit": "maybe"}):
        for segment in ("high_touch", "tech_touch"):
            record = account(segment, **values)
            assert health_fields(rules(), record, NOW) == compute(rules(), record, NOW).fields()
