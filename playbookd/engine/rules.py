"""The rules engine: conditions compiled once to a durable_rules ruleset, accounts matched in batches.

The only module that touches durable_rules. It drives the engine's C extension directly
rather than through `durable.lang`: the library's Host runs timer threads that dispatch
pending actions on their own, which would race with collecting a batch's matches, and
its wrapper turns "no rule matched" into an exception. Each batch of facts is asserted
on ONE session which is then deleted, so live sessions stay far below the count at which
the engine crashes. Worker processes (engine.pool) contain the engine's segfaults and bound
each batch's time: a batch that crashes or runs too long is bisected down to the account
behind it. `matches` never reaches the engine's own regex operator (full-value only, other
syntax); facts carry it precomputed with RE2, as the reference evaluator computes it.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import durable_rules_engine as engine

from playbookd.engine.facts import MARKER, FactBuilder, encode_literal, fact_builder
from playbookd.engine.pool import BatchPool
from playbookd.model.account import AccountRecord
from playbookd.model.conditions import FUTURE, PAST, All, Condition, Contacts, Leaf, Not
from playbookd.store.chunks import chunked
from playbookd.workers import stopping

Expr = dict[str, Any]
Node = Expr | bool
Match = tuple[str, frozenset[str]]
Failure = tuple[str, str]
Outcome = tuple[list[Match], list[Failure]]
Facts = list[tuple[str, dict[str, Any]]]
_COMPLEMENT = {"gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}
_SESSION = "batch"
CATCH_ALL = "all"
_CATCH_ALL_PREFIX = f'{{"{CATCH_ALL}":'
_names = itertools.count()


def _combine(op: str, parts: Iterable[Node]) -> Node:
    """`$and` / `$or` of parts, folding constants and nested groups of the same kind."""
    unit = op == "$and"
    items: list[Expr] = []
    for part in parts:
        if part is (not unit):
            return not unit
        if isinstance(part, dict):
            items.extend(part[op] if op in part and len(part) == 1 else [part])
    if not items:
        return unit
    return items[0] if len(items) == 1 else {op: items}


def _and(*parts: Node) -> Node:
    return _combine("$and", parts)


def _or(*parts: Node) -> Node:
    return _combine("$or", parts)


def _missing(key: str) -> Expr:
    return {"$nex": {key: 1}}


def _test(op: str, key: str, value: Any) -> Expr:
    return {key: value} if op == "eq" else {f"${op}": {key: value}}


class _Compiler:
    """Condition -> durable_rules expression, with `not` pushed down to the leaves."""

    def __init__(self, builder: FactBuilder) -> None:
        self.builder = builder

    def node(self, cond: Condition, positive: bool) -> Node:
        key = self.builder.computed_key(cond)
        if key is not None:
            return {key: int(positive)}
        if isinstance(cond, Leaf):
            return self.leaf(cond, positive)
        if isinstance(cond, Not):
            return self.node(cond.item, not positive)
        if isinstance(cond, Contacts):
            raise AssertionError("a contacts condition is always precomputed into the fact")
        parts = [self.node(item, positive) for item in cond.items]
        return _and(*parts) if isinstance(cond, All) is positive else _or(*parts)

    def leaf(self, leaf: Leaf, positive: bool) -> Node:
        if leaf.op == "exists":
            present = {"$ex": {self.builder.key(leaf.field, "p"): 1}}
            return present if leaf.value is positive else _missing(self.builder.key(leaf.field, "p"))
        if leaf.op in ("eq", "ne", "in", "not_in"):
            return self._equality(leaf, positive)
        if leaf.op == "between":
            return self._between(leaf, positive)
        if leaf.op in PAST or leaf.op in FUTURE:
            return self._relative(leaf, positive)
        kind, value = encode_literal(leaf.value, self.builder.tz)
        key = self.builder.key(leaf.field, kind)
        if positive:
            return _test(leaf.op, key, value)
        return _or(_missing(key), _test(_COMPLEMENT[leaf.op], key, value))

    def _groups(self, leaf: Leaf) -> dict[str, list[Any]]:
        values = leaf.value if leaf.op in ("in", "not_in") else (leaf.value,)
        groups: dict[str, list[Any]] = {}
        for value in values:
            kind, encoded = encode_literal(value, self.builder.tz)
            groups.setdefault(self.builder.key(leaf.field, kind), []).append(encoded)
        return groups

    def _equality(self, leaf: Leaf, positive: bool) -> Node:
        groups = self._groups(leaf)
        any_of = _or(*(_test("eq", key, v) for key, values in groups.items() for v in values))
        none_of = _and(*(
            _or(_missing(key), _and(*(_test("neq", key, v) for v in values)))
            for key, values in groups.items()
        ))
        if leaf.op in ("eq", "in"):
            return any_of if positive else none_of
        present = self.builder.key(leaf.field, "p")
        return _and({"$ex": {present: 1}}, none_of) if positive else _or(_missing(present), any_of)

    def _between(self, leaf: Leaf, positive: bool) -> Node:
        kind, low = encode_literal(leaf.value[0], self.builder.tz)
        _, high = encode_literal(leaf.value[1], self.builder.tz)
        key = self.builder.key(leaf.field, kind)
        if positive:
            return _and(_test("gte", key, low), _test("lte", key, high))
        return _or(_missing(key), _test("lt", key, low), _test("gt", key, high))

    def _relative(self, leaf: Leaf, positive: bool) -> Node:
        key = self.builder.key(leaf.field, "a")
        span = leaf.value * 1_000_000
        tests = {
            "older_than": [("gt", span)], "within_last": [("lte", span)],
            "within_next": [("gte", -span), ("lte", 0)], "beyond_next": [("lt", -span)],
        }[leaf.op]
        if positive:
            return _and(*(_test(op, key, value) for op, value in tests))
        return _or(_missing(key), *(_test(_COMPLEMENT[op], key, value) for op, value in tests))


def compile_ruleset(rules: Sequence[tuple[str, Condition]], builder: FactBuilder) -> dict[str, Any]:
    """The durable_rules definition: one rule per condition that can be true, named r0, r1, ..."""
    compiler = _Compiler(builder)
    # Every fact must fire some rule: asserting facts no rule handles, then deleting the
    # session, corrupts the engine's heap (measured: "free(): invalid pointer", segfaults).
    definition: dict[str, Any] = {CATCH_ALL: {"all": [{"m": {MARKER: 1}}]}}
    for i, (_, cond) in enumerate(rules):
        expr = compiler.node(cond, True)
        if expr is not False:
            definition[f"r{i}"] = {"all": [{"m": _and({MARKER: 1}, expr)}]}
    return definition


class _Evaluator:
    """One compiled ruleset inside one process."""

    def __init__(self, rules: Sequence[tuple[str, Condition]], tz: ZoneInfo) -> None:
        self.tz = tz
        self.builder = fact_builder([cond for _, cond in rules], tz)
        self.rule_ids = {f"r{i}": rule_id for i, (rule_id, _) in enumerate(rules)}
        text = json.dumps(compile_ruleset(rules, self.builder), ensure_ascii=False)
        name = f"playbookd_{os.getpid()}_{next(_names)}"
        self.handle = engine.create_ruleset(name, text)

    def close(self) -> None:
        engine.delete_ruleset(self.handle)

    def run(self, records: Sequence[AccountRecord], now: datetime) -> Outcome:
        failures: list[Failure] = []
        facts: Facts = []
        for record in records:
            try:
                facts.append((str(record["id"]), self.builder.build(record, now)))
            except Exception as exc:  # one bad record must not stop the batch
                failures.append((str(record.get("id")), f"cannot build its fact: {exc}"))
        return self._isolate(facts, failures), failures

    def _isolate(self, facts: Facts, failures: list[Failure]) -> list[Match]:
        if not facts:
            return []
        try:
            return self._assert(facts)
        except Exception as exc:
            if len(facts) == 1:
                failures.append((facts[0][0], f"the rules engine refused it: {exc}"))
                return []
        half = len(facts) // 2
        return self._isolate(facts[:half], failures) + self._isolate(facts[half:], failures)

    def _assert(self, facts: Facts) -> list[Match]:
        batch = [{**fact, "sid": _SESSION, "_q": q} for q, (_, fact) in enumerate(facts)]
        try:
            code, state = engine.assert_facts(self.handle, json.dumps(batch, ensure_ascii=False))
            if code != 0:
                raise RuntimeError(f"assert_facts returned {code}")
            fired = self._collect(state)
        finally:
            engine.delete_state(self.handle, _SESSION)
        return [(facts[q][0], frozenset(ids)) for q, ids in sorted(fired.items())]

    def _collect(self, state: int) -> dict[int, set[str]]:
        fired: dict[int, set[str]] = {}
        started = engine.start_action_for_state(self.handle, state)
        message = started[1] if started else None
        while message:
            if message.startswith(_CATCH_ALL_PREFIX):
                message = engine.complete_and_start_action(self.handle, state)
                continue
            for rule, found in json.loads(message).items():
                fired.setdefault(found["m"]["_q"], set()).add(self.rule_ids[rule])
            message = engine.complete_and_start_action(self.handle, state)
        return fired


_worker: _Evaluator | None = None


def _init_worker(rules: Sequence[tuple[str, Condition]], tz: ZoneInfo) -> None:
    global _worker
    _worker = _Evaluator(rules, tz)


def _work(records: list[AccountRecord], now: datetime) -> Outcome:
    assert _worker is not None, "worker started without its initializer"
    return _worker.run(records, now)


_warm_lock = threading.Lock()
# the workers of the rulesets last closed, oldest first, kept for the next evaluation: two, so that
# the state-triggered playbooks' and the event playbooks' both stay warm through a cycle
_warm: dict[str, BatchPool] = {}
KEEP_WARM = 2


def _ruleset_key(rules: Sequence[tuple[str, Condition]], tz: ZoneInfo) -> str:
    return repr((list(rules), str(tz)))


def _take_warm(key: str, size: int) -> BatchPool | None:
    with _warm_lock:
        found = _warm.pop(key, None)
    if found is not None and not found.idle():
        found.close()
        return None
    if found is not None:
        found.shrink(size)
    return found


def _park(key: str, pool: BatchPool) -> None:
    with _warm_lock:
        _warm[key] = pool
        evicted = [_warm.pop(k) for k in list(_warm)[:-KEEP_WARM]]
    for old in evicted:
        old.close()


def close_idle() -> None:
    """Stop the worker processes kept for the next evaluation (a shutdown, tests)."""
    with _warm_lock:
        found = list(_warm.values())
        _warm.clear()
    for pool in found:
        pool.close()


class RuleEngine:
    """Matches accounts against rules; `workers` >= 1 evaluates in worker processes, each batch under
    `batch_seconds` (see engine.pool); 0 evaluates in this process, without that bound (tests, and
    callers that must not start processes). The workers of the last two rulesets closed are kept,
    idle, for the next engine of the same rules: most evaluations compile the same playbooks again,
    and a worker costs an interpreter's start and the compile, which was most of an incremental
    evaluation of a few accounts. Workers start as batches need them (engine.pool)."""

    def __init__(self, rules: Sequence[tuple[str, Condition]], tz: ZoneInfo, workers: int = 0,
                 batch_size: int = 500, batch_seconds: float = 60.0) -> None:
        if workers < 0 or batch_size < 1 or batch_seconds <= 0:
            raise ValueError("workers must be >= 0, batch_size >= 1 and batch_seconds > 0")
        self.rules = list(rules)
        self.tz = tz
        self.workers = workers
        self.batch_size = batch_size
        self.failures: list[tuple[str, str]] = []
        self._key = _ruleset_key(self.rules, tz)
        self._pool = _take_warm(self._key, workers) if workers else None
        self._closed = False
        self._unfinished = 0  # streams begun and not run to their end: their workers may be mid-call
        if self._pool is not None:  # compiled before, in these very workers
            self._pool.seconds = batch_seconds
            return
        self._local = _Evaluator(self.rules, tz)  # also proves the ruleset compiles before workers start
        if workers:
            self._local.close()
            self._pool = BatchPool(workers, _init_worker, (self.rules, tz), _work, batch_seconds)

    def match(self, records: Iterable[AccountRecord], now: datetime) -> Iterator[Match]:
        chunks = chunked(records, self.batch_size)
        if self._pool is None:
            for chunk in chunks:
                yield from self._take(self._local.run(chunk, now))
            return
        self._unfinished += 1
        for outcome in self._pool.run(chunks, now):
            yield from self._take(outcome)
        self._unfinished -= 1

    def _take(self, outcome: Outcome) -> list[Match]:
        self.failures.extend(outcome[1])
        return outcome[0]

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if not self._unfinished and pool.idle() and not stopping():
                _park(self._key, pool)
            else:  # a stream left unfinished, or a worker lost: nothing to keep
                pool.close()
        elif not self._closed:
            self._local.close()
        self._closed = True

    def __enter__(self) -> RuleEngine:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
