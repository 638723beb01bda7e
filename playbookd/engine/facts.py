"""Account record -> rules-engine fact: a flat JSON-able dict the compiled ruleset can test.

The ruleset is compiled once and reused at many evaluation times, so time-dependent
values are precomputed here ("age" keys). Each field gets one key per value class
(number, boolean, text, instant as epoch microseconds), so a rule comparing a number
never sees a text value: the engine coerces numeric-looking text on its own, which
would break the cross-class-is-false rule. Leaves the engine cannot test faithfully
(regex, contains, changes, text ordering, numbers it cannot parse) are evaluated here
with the reference semantics and stored as 0/1 keys; so are subtrees whose disjunctive
form would grow too large, and every `contacts:` condition: the engine sees flat facts, so a
test over the account's list of contacts is answered here, per account, as one 0/1 key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playbookd.model import evaluation
from playbookd.model.account import AccountRecord, lookup
from playbookd.model.conditions import FUTURE, PAST, All, Any_, Condition, Contacts, Leaf, Not

MARKER = "_a"           # every account fact has it; the engine's own state fact does not
SAFE_INT = 2**53        # beyond this, int/float comparisons in the engine lose exactness
BIG = SAFE_INT + 2      # stands in for any larger magnitude: above every plain literal
TINY = 0.0001           # stands in for smaller non-zero magnitudes, whose text uses exponents
MAX_SPAN_US = 2**62     # durations are compared in microseconds as 64-bit integers
DNF_LIMIT = 64
NATIVE_ORDER = ("gt", "gte", "lt", "lte", "between")


def encode_number(value: int | float) -> int | float | None:
    """A record's number as the engine may read it (its JSON reader rejects `1e+20`); None for NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    size = abs(value)
    if size > SAFE_INT:
        return BIG if value > 0 else -BIG
    if 0 < size < TINY:
        return TINY if value > 0 else -TINY
    return value


def plain_number(value: Any) -> bool:
    """A literal the engine compares exactly, and that no encoded record number can stand in for."""
    if evaluation.value_class(value) != "n" or not math.isfinite(value):
        return False
    return bool(value == 0 or TINY < abs(value) <= SAFE_INT)


def encode_literal(value: Any, tz: ZoneInfo) -> tuple[str, Any]:
    """(value class, encoded value) of a literal that `native` accepted."""
    kind = evaluation.value_class(value)
    if kind == "t":
        return kind, evaluation.epoch_us(value, tz)
    if kind == "b":
        return kind, int(value)
    return str(kind), value


def _literal_ok(value: Any, order: bool) -> bool:
    kind = evaluation.value_class(value)
    if kind == "n":
        return plain_number(value)
    return kind == "t" or (kind in ("s", "b") and not order)


def native(leaf: Leaf) -> bool:
    """Whether the engine can test this leaf exactly as evaluation.evaluate does."""
    if leaf.op == "exists":
        return isinstance(leaf.value, bool)
    if leaf.op in ("in", "not_in"):
        return isinstance(leaf.value, tuple) and all(_literal_ok(v, False) for v in leaf.value)
    if leaf.op in ("eq", "ne"):
        return _literal_ok(leaf.value, False)
    if leaf.op == "between":
        low, high = leaf.value
        same = evaluation.value_class(low) == evaluation.value_class(high)
        return same and _literal_ok(low, True) and _literal_ok(high, True)
    if leaf.op in NATIVE_ORDER:
        return _literal_ok(leaf.value, True)
    if leaf.op in PAST or leaf.op in FUTURE:
        return evaluation.value_class(leaf.value) == "n" and abs(leaf.value) * 1_000_000 < MAX_SPAN_US
    return False


def _leaf_size(leaf: Leaf) -> int:
    return len(leaf.value) + 1 if leaf.op in ("in", "not_in") else 2


class _Planner:
    """Chooses which nodes are precomputed so every rule's disjunctive form stays small."""

    def __init__(self) -> None:
        self.computed: dict[Condition, None] = {}

    def walk(self, cond: Condition, positive: bool) -> int:
        if isinstance(cond, Contacts):
            self.computed[cond] = None
            return 1
        if isinstance(cond, Leaf):
            if not native(cond):
                self.computed[cond] = None
                return 1
            return _leaf_size(cond)
        if isinstance(cond, Not):
            return self.walk(cond.item, not positive)
        sizes: list[list[Any]] = [[self.walk(item, positive), item] for item in cond.items]
        if isinstance(cond, All) is positive:
            return self._conjunction(sizes)
        total = sum(int(size) for size, _ in sizes)
        if total > DNF_LIMIT:
            self.computed[cond] = None
            return 1
        return max(total, 1)

    def _conjunction(self, sizes: list[list[Any]]) -> int:
        product: int = math.prod(int(size) for size, _ in sizes)
        while product > DNF_LIMIT:
            biggest = max(sizes, key=lambda pair: int(pair[0]))
            self.computed[biggest[1]] = None
            biggest[0] = 1
            product = math.prod(int(size) for size, _ in sizes)
        return product


def _fields(conds: Sequence[Condition]) -> tuple[list[str], set[str]]:
    names: dict[str, None] = {}
    aged: set[str] = set()
    for cond in conds:
        for leaf in _native_leaves(cond):
            names[leaf.field] = None
            if leaf.op in PAST or leaf.op in FUTURE:
                aged.add(leaf.field)
    return list(names), aged


def _native_leaves(cond: Condition) -> list[Leaf]:
    if isinstance(cond, Contacts):
        return []
    if isinstance(cond, Leaf):
        return [cond] if native(cond) else []
    if isinstance(cond, Not):
        return _native_leaves(cond.item)
    return [leaf for item in cond.items for leaf in _native_leaves(item)]


class FactBuilder:
    """Builds facts for one compiled rule set; `key`, `age`, `computed_key` name the fact's keys."""

    def __init__(self, conds: Sequence[Condition], tz: ZoneInfo) -> None:
        self.tz = tz
        planner = _Planner()
        for cond in conds:
            planner.walk(cond, True)
        self.computed = {cond: f"l{i}" for i, cond in enumerate(planner.computed)}
        names, self.aged = _fields(conds)
        self.index = {name: i for i, name in enumerate(names)}
        # per field, what build() needs: worked out once, not once per account
        self._plan = [(name, f"f{i}", name in self.aged, name.startswith("event."))
                      for name, i in self.index.items()]

    def key(self, field: str, kind: str) -> str:
        """kind: 'p' presence, 'n' number, 'b' boolean, 's' text, 't' instant, 'a' age."""
        return f"f{self.index[field]}{kind}"

    def computed_key(self, cond: Condition) -> str | None:
        return self.computed.get(cond)

    def build(self, record: AccountRecord, now: datetime) -> dict[str, Any]:
        fact: dict[str, Any] = {MARKER: 1}
        now_us = evaluation.epoch_us(now, self.tz)
        for name, prefix, aged, of_event in self._plan:
            value = lookup(record, name) if of_event else record.get(name)
            if value is not None:
                self._add_value(fact, prefix, value, now_us if aged else None)
        for cond, key in self.computed.items():
            fact[key] = int(evaluation.evaluate(cond, record, now, self.tz))
        return fact

    def _add_value(self, fact: dict[str, Any], prefix: str, value: Any, now_us: int | None) -> None:
        fact[prefix + "p"] = 1
        kind = evaluation.value_class(value)
        if kind == "n":
            number = encode_number(value)
            if number is not None:
                fact[prefix + "n"] = number
        elif kind == "t":
            at = evaluation.epoch_us(value, self.tz)
            fact[prefix + "t"] = at
            if now_us is not None:
                fact[prefix + "a"] = now_us - at
        elif kind == "b":
            fact[prefix + "b"] = int(value)
        elif kind == "s":
            fact[prefix + "s"] = value


def fact_builder(conds: Sequence[Condition], tz: ZoneInfo) -> FactBuilder:
    return FactBuilder(conds, tz)


__all__ = ["Any_", "FactBuilder", "encode_literal", "fact_builder", "native"]
