"""Accounts alike segmented once (sync.segments.Segmenter.of): the segment each would get alone,
never a twin's that differs in a value, its class, a zero's sign or a column's type; conditions
that read the clock evaluate every account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from playbookd.config.settings import Config
from playbookd.sync import segments
from playbookd.sync.segments import Segmenter

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TYPES = {"arr": "decimal", "plan": "string", "last_login_at": "datetime"}


def config(*rules: dict[str, Any]) -> Config:
    return Config.model_validate({"company": {"postal_address": "1 Main St"},
                                  "segments": [*rules, {"name": "tech_touch"}]})


STATIC = ({"name": "high_touch", "when": {"arr": {"gte": 100000}}},
          {"name": "low_touch", "when": {"any": [{"arr": {"gt": 0}}, {"plan": "pro"}]}})
ACCOUNTS = [{"arr": 150000}, {"arr": 150000, "region": "EU"}, {"arr": 5000}, {"arr": 0.0}, {"arr": -0.0},
            {"arr": True}, {"arr": 1}, {"plan": "pro"}, {"plan": None}, {}, {"arr": [150000]}]


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = Segmenter._of

    def counting(self: Segmenter, account_id: str, *args: Any) -> str:
        seen.append(account_id)
        return original(self, account_id, *args)

    monkeypatch.setattr(Segmenter, "_of", counting)
    return seen


def alone(cfg: Config, data: dict[str, Any], types: dict[str, str]) -> str:
    """Evaluated on its own, by conditions read as the tests' segmenters read them (TYPES)."""
    return Segmenter(cfg, TYPES, NOW)._of("X", data, {}, types)


def test_accounts_alike_are_segmented_once_and_as_each_would_be(evaluated: list[str]) -> None:
    cfg = config(*STATIC)
    segmenter = Segmenter(cfg, TYPES, NOW)
    got = [segmenter.of(f"A{i}", data, {}, TYPES) for i, data in enumerate(ACCOUNTS * 2)]
    assert got == [alone(cfg, data, TYPES) for data in ACCOUNTS * 2]
    # every distinct input once (the unread region shares, absent and null share), the list each time
    assert len([a for a in evaluated if a != "X"]) == len(ACCOUNTS) - 1 - 1 + 1


def test_a_column_read_as_another_type_is_segmented_again(evaluated: list[str]) -> None:
    cfg = config(*STATIC)
    segmenter = Segmenter(cfg, TYPES, NOW)
    text = {**TYPES, "arr": "string"}
    assert segmenter.of("A", {"arr": "150000"}, {}, TYPES) == alone(cfg, {"arr": "150000"}, TYPES)
    assert segmenter.of("B", {"arr": "150000"}, {}, text) == alone(cfg, {"arr": "150000"}, text)
    assert evaluated == ["A", "X", "B", "X"]  # B is not given A's segment


def test_conditions_on_the_clock_evaluate_every_account(evaluated: list[str]) -> None:
    segmenter = Segmenter(config({"name": "recent", "when": {"last_login_at": {"within_last": "7d"}}}), TYPES, NOW)
    data = {"last_login_at": "2026-11-01T00:00:00+00:00"}
    assert [segmenter.of(f"A{i}", data, {}, TYPES) for i in range(3)] == ["recent"] * 3
    assert evaluated == ["A0", "A1", "A2"]


def test_a_full_cache_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments, "CACHED", 2)
    cfg = config(*STATIC)
    segmenter = Segmenter(cfg, TYPES, NOW)
    got = [segmenter.of("A", {"arr": n}, {}, TYPES) for n in (0, 5000, 150000, 0, 150000)]
    assert got == [alone(cfg, {"arr": n}, TYPES) for n in (0, 5000, 150000, 0, 150000)]
    assert len(segmenter.found) <= 2
