"""Health scores: measures weighed into one number from 0 to 100, and a colour from the segment's limits.

Pure: a record in, a breakdown out. A measure whose field is missing is left out and the weights of
the others are re-normalised. Arithmetic is decimal throughout and rounded half-up once, to one
decimal, so a hand computation lands on the same digit (binary floats and round() would turn 72.25
into 72.2). The colour comes from the rounded score: what `health` shows is what the limits saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from playbookd.model import fields as F
from playbookd.model.account import encode, lookup
from playbookd.model.conditions import Condition, static
from playbookd.model.evaluation import equal, evaluate

HEALTH_SCORE, HEALTH_COLOR = "health_score", "health_color"
HEALTH_FIELDS: dict[str, str] = {HEALTH_SCORE: F.DECIMAL, HEALTH_COLOR: F.STRING}
COLORS = ("red", "yellow", "green")
DEFAULT = "default"
TENTH = Decimal("0.1")
HUNDRED = Decimal(100)


def tenth(value: Decimal) -> Decimal:
    """Rounded half-up to one decimal."""
    return value.quantize(TENTH, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Band:
    test: Condition | None  # None: matches every value the bands before it did not
    score: Decimal


@dataclass(frozen=True)
class Measure:
    """One measure; `reads` are the fields whose absence leaves it out."""

    name: str
    weight: Decimal
    reads: tuple[str, ...]
    field: str | None = None
    bands: tuple[Band, ...] = ()
    mapping: tuple[tuple[Any, Decimal], ...] | None = None
    when: Condition | None = None
    score: Decimal | None = None
    otherwise: Decimal | None = None

    def value(self, record: Mapping[str, Any]) -> Any:
        """What the breakdown shows as the measure's input: its field's value, or the fields its condition reads."""
        if self.field is not None:
            return lookup(record, self.field)
        if len(self.reads) == 1:
            return lookup(record, self.reads[0])
        return {name: lookup(record, name) for name in self.reads}

    def scored(self, record: dict[str, Any], now: datetime, tz: ZoneInfo) -> Decimal | None:
        """The measure's score, None when it is left out (a field it reads is missing, a value not in `map`)."""
        if any(lookup(record, name) is None for name in self.reads):
            return None
        if self.when is not None:
            return self.score if evaluate(self.when, record, now, tz) else self.otherwise
        if self.mapping is not None:
            value = lookup(record, self.reads[0])
            return next((score for key, score in self.mapping if equal(value, key, tz)), None)
        return next((b.score for b in self.bands if b.test is None or evaluate(b.test, record, now, tz)), None)


Ops = tuple[tuple[str, Decimal], ...]
_HOLDS = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b,
          "gte": lambda a, b: a >= b}


@dataclass(frozen=True)
class Limits:
    red: Ops
    yellow: Ops

    def color(self, score: Decimal) -> str:
        if all(_HOLDS[op](score, limit) for op, limit in self.red):
            return "red"
        if all(_HOLDS[op](score, limit) for op, limit in self.yellow):
            return "yellow"
        return "green"


@dataclass(frozen=True)
class HealthRules:
    """config.yaml's health section, checked and typed."""

    measures: tuple[Measure, ...]
    colors: tuple[tuple[str, Limits], ...]
    tz: ZoneInfo

    def limits(self, segment: str | None) -> Limits | None:
        by_segment = dict(self.colors)
        return by_segment.get(segment or "", by_segment.get(DEFAULT))

    @property
    def reads(self) -> frozenset[str]:
        return frozenset(name for m in self.measures for name in m.reads)

    @property
    def static(self) -> bool:
        """Whether a score depends on the account's fields and segment alone (no clock, no history)."""
        return all(static(m.when) and all(static(b.test) for b in m.bands) for m in self.measures)


@dataclass(frozen=True)
class Scored:
    name: str
    value: Any
    score: Decimal | None  # None: left out
    weight: Decimal  # its share of the score in percent, after re-normalisation, one decimal

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": _json_value(self.value), "score": _number(self.score),
                "weight": _number(self.weight)}


@dataclass(frozen=True)
class Health:
    score: Decimal | None
    color: str | None
    measures: tuple[Scored, ...]

    def fields(self) -> dict[str, Any]:
        """health_score and health_color as an account stores them (None: the field is absent)."""
        return {HEALTH_SCORE: _number(self.score), HEALTH_COLOR: self.color}

    def as_json(self, account: str, segment: str | None) -> dict[str, Any]:
        return {"account": account, "segment": segment, "score": _number(self.score), "color": self.color,
                "measures": [m.as_json() for m in self.measures]}


def _mean(rules: HealthRules, scores: list[Decimal | None]) -> tuple[Decimal, Decimal | None]:
    """(total weight of the measures that apply, their weighted mean rounded); (0, None) when none applies."""
    total = sum((m.weight for m, s in zip(rules.measures, scores, strict=True) if s is not None), Decimal(0))
    if not total:
        return total, None
    weighted = sum((m.weight * s for m, s in zip(rules.measures, scores, strict=True) if s is not None), Decimal(0))
    return total, tenth(weighted / total)


def _scores(rules: HealthRules, record: dict[str, Any], now: datetime) -> list[Decimal | None]:
    return [m.scored(record, now, rules.tz) for m in rules.measures]


def _color(rules: HealthRules, record: dict[str, Any], score: Decimal | None) -> str | None:
    limits = rules.limits(record.get("segment"))
    return None if score is None or limits is None else limits.color(score)


def compute(rules: HealthRules, record: dict[str, Any], now: datetime) -> Health:
    """The health of one account: weighted mean of the measures that apply, its colour, and the breakdown."""
    scores = _scores(rules, record, now)
    with localcontext() as context:
        context.prec = 60  # sums and products of config numbers stay exact; the division is rounded once
        total, score = _mean(rules, scores)
        measures = tuple(Scored(m.name, m.value(record), s, _share(m.weight, total, s))
                         for m, s in zip(rules.measures, scores, strict=True))
    return Health(score, _color(rules, record, score), measures)


def health_fields(rules: HealthRules, record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """health_score and health_color alone, as compute() gives them: what a sync stores for every account."""
    scores = _scores(rules, record, now)
    with localcontext() as context:
        context.prec = 60
        _, score = _mean(rules, scores)
    return {HEALTH_SCORE: _number(score), HEALTH_COLOR: _color(rules, record, score)}


def _share(weight: Decimal, total: Decimal, score: Decimal | None) -> Decimal:
    """A measure's weight re-normalised over the measures that apply, in percent; 0 when left out."""
    return Decimal(0) if score is None else tenth(weight * HUNDRED / total)


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return encode(value)
