"""Accounts alike scored once (sync.scores.Alike): the same health as scoring each, never a twin's
that differs in a value, its type or its segment; rules that read the clock score every account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from playbookd.config.settings import Config
from playbookd.model.account import decode_account
from playbookd.model.conditions import AnyField, parse_condition_data
from playbookd.model.evaluation import evaluate
from playbookd.model.health import HealthRules, health_fields
from playbookd.model.health_rules import build_rules
from playbookd.sync import scores
from playbookd.sync.scores import Alike

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TYPES = {"seat_utilization": "integer", "nps": "integer", "usage_fit": "string", "last_login_at": "datetime"}
STATIC = """
measures:
  - {name: adoption, weight: 40, field: seat_utilization, bands: [{gte: 80, score: 100}, {score: 20}]}
  - {name: sentiment, weight: 20, when: {nps: {gte: 9}}, score: 100, else: 40}
  - {name: csm_view, weight: 20, field: usage_fit, map: {"yes": 100, "no": 0}}
colors:
  high_touch: {red: {lt: 60}, yellow: {lt: 80}}
  default:    {red: {lt: 40}, yellow: {lt: 70}}
"""


def rules(text: str) -> HealthRules:
    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "health": yaml.safe_load(text)})
    built, problems = build_rules(cfg.health, AnyField(dict(TYPES)), cfg.tz, "config.yaml")  # type: ignore[arg-type]
    assert not problems, problems
    return built


def one_by_one(built: HealthRules, segment: str, data: dict[str, Any]) -> dict[str, Any]:
    reads = {n: data[n] for n in built.reads if n in data}
    return health_fields(built, decode_account("X", segment, reads, {}, TYPES), NOW)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted: list[int] = []

    def counting(*args: Any) -> dict[str, Any]:
        counted.append(1)
        return health_fields(*args)

    monkeypatch.setattr(scores, "health_fields", counting)
    return counted


ACCOUNTS = [("default", {"seat_utilization": 90, "nps": 10, "usage_fit": "yes"}),
            ("default", {"seat_utilization": 90, "nps": 10, "usage_fit": "yes", "region": "EU"}),  # not read
            ("high_touch", {"seat_utilization": 90, "nps": 10, "usage_fit": "no"}),
            ("default", {"seat_utilization": 90, "nps": 10, "usage_fit": "no"}),  # another segment's colours
            ("default", {"seat_utilization": 90.0, "nps": 3, "usage_fit": "no"}),  # a float is not the int
            ("default", {"seat_utilization": True, "nps": 3, "usage_fit": "no"}),  # nor is a flag 1
            ("default", {"seat_utilization": 1, "nps": 3, "usage_fit": "no"}),
            ("default", {"seat_utilization": 1, "nps": None, "usage_fit": "no"}),
            ("default", {"seat_utilization": 1, "usage_fit": "no"}),  # missing as None: left out alike
            ("default", {"seat_utilization": [90], "nps": 3, "usage_fit": "no"})]  # a list: scored alone


def test_accounts_alike_are_scored_once_and_as_each_would_be(calls: list[int]) -> None:
    built = rules(STATIC)
    alike = Alike(built, NOW)
    got = [alike(f"A{i}", segment, data, TYPES) for i, (segment, data) in enumerate(ACCOUNTS * 3)]
    assert got == [one_by_one(built, segment, data) for segment, data in ACCOUNTS * 3]
    assert got[2] != got[3], "the same inputs in another segment take its colours"
    assert len(calls) == 7 + 3, "each distinct input once; the unhashable one every time"
    got[0]["health_score"] = -1.0  # a caller writing into what it was given changes no twin's score
    assert alike("B", *ACCOUNTS[0], TYPES) == one_by_one(built, *ACCOUNTS[0])


def test_a_column_read_as_another_type_is_scored_again(calls: list[int]) -> None:
    built = rules(STATIC)
    alike = Alike(built, NOW)
    alike("A", "default", {"seat_utilization": 90}, TYPES)
    alike("B", "default", {"seat_utilization": 90}, {**TYPES, "seat_utilization": "string"})
    assert len(calls) == 2


def test_rules_that_read_the_clock_score_every_account(calls: list[int]) -> None:
    text = STATIC.replace("colors:", "  - {name: recency, weight: 20, when: {last_login_at: {older_than: 14d}},"
                                     " score: 0, else: 100}\ncolors:")
    built = rules(text)
    alike = Alike(built, NOW)
    data = {"seat_utilization": 90, "last_login_at": "2026-10-01T00:00:00+00:00"}
    assert [alike(f"A{i}", "default", data, TYPES) for i in range(3)] == [one_by_one(built, "default", data)] * 3
    assert len(calls) == 3


def test_a_signed_zero_is_another_input(calls: list[int]) -> None:
    """-0.0 == 0.0 (and hashes alike), yet they are two inputs: each is scored, as each would be."""
    built = rules(STATIC)
    alike = Alike(built, NOW)
    zeros = [{"seat_utilization": 0.0, "nps": 3}, {"seat_utilization": -0.0, "nps": 3}]
    got = [alike(f"A{i}", "default", data, TYPES) for i, data in enumerate(zeros * 2)]
    assert got == [one_by_one(built, "default", data) for data in zeros * 2]
    assert len(calls) == 2


CONDITIONS = [{"exists": True}, {"exists": False}, {"eq": 1}, {"ne": 1}, {"gt": 0}, {"lte": 0},
              {"in": [1, 2]}, {"not_in": [1, 2]}, {"between": [0, 5]}, {"contains": "a"},
              {"matches": "a"}, {"older_than": "7d"}, {"within_last": "7d"}, {"within_next": "7d"}]


@pytest.mark.parametrize("op", CONDITIONS, ids=lambda c: next(iter(c)))
def test_an_absent_field_and_a_null_one_evaluate_alike(op: dict[str, Any]) -> None:
    """Why Alike (and the Segmenter) give an absent field and a null one the same key: every leaf reads
    a field through `lookup`, None for both, so no condition, `exists` and `not` included, tells them apart."""
    for when in ({"nps": op}, {"not": {"nps": op}}):
        cond, problems = parse_condition_data(when, "config.yaml", AnyField({}))
        assert not problems, problems
        absent = decode_account("A", "default", {}, {}, TYPES)
        null = decode_account("A", "default", {"nps": None}, {}, TYPES)
        assert evaluate(cond, absent, NOW, UTC) == evaluate(cond, null, NOW, UTC)
