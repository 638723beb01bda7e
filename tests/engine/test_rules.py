from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playbookd.config.durations import Months
from playbookd.engine.facts import fact_builder
from playbookd.engine.rules import RuleEngine
from playbookd.model.conditions import TRUE, All, Any_, Condition, Leaf, Not, Trend
from playbookd.model.evaluation import evaluate

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
DAY = 86400
FIELDS = ("x", "n", "s", "d", "t", "b", "tags", "event.e")
NUMBERS = (0, 1, -1, 2.5, 5, 5.0, 2**53, 2**53 + 1, 2**60, 1e20, -1e20, 5e-5, 0.0001,
           float("nan"), float("inf"))
TEXTS = ("", "a", "ab", "B", "é", "5", "5.0", "a+b", 'q"\\')
DATES = tuple(NOW.date() + timedelta(days=k) for k in (-30, -8, -7, -1, 0, 1, 7, 31))
DATETIMES = tuple(NOW + timedelta(seconds=k) for k in (-8 * DAY, -7 * DAY, -DAY - 1, -1, 0, 1, 3600, 7 * DAY))
NAIVE = tuple(d.replace(tzinfo=None) for d in DATETIMES[:3])
SCALARS = st.sampled_from((*NUMBERS, *TEXTS, *DATES, *DATETIMES, *NAIVE, True, False))
SPANS = st.sampled_from((0, 60, 3600, DAY, 7 * DAY, 30 * DAY, 10**13))
REGEXES = st.sampled_from(("^a", "b$", "a|é", ".", "^$", r"5\.0", r"\+"))
ZONES = st.sampled_from((ZoneInfo("UTC"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")))


def _literal(op: str) -> st.SearchStrategy[Any]:
    if op in ("in", "not_in"):
        return st.lists(SCALARS, min_size=1, max_size=3).map(tuple)
    if op == "between":
        return st.tuples(SCALARS, SCALARS)
    if op in ("exists", "changed"):
        return st.booleans()
    if op == "contains":
        return st.sampled_from(TEXTS)
    if op == "matches":
        return REGEXES
    if op in ("older_than", "within_last", "within_next", "beyond_next"):
        return SPANS
    if op in ("dropped_by", "rose_by"):
        return st.builds(Trend, st.sampled_from((0.1, 5.0, 15.0)), st.sampled_from((DAY, 30 * DAY, Months(1))))
    return SCALARS


Rules = list[tuple[str, Condition]]
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains", "matches", "between",
       "older_than", "within_last", "within_next", "beyond_next", "changed", "changed_from", "changed_to",
       "dropped_by", "rose_by")
HISTORY_ROW = st.tuples(st.integers(-40, 1).map(lambda k: NOW.date() + timedelta(days=k)),
                        st.sampled_from((None, 12.5, 60.0, 75.3)), st.sampled_from((None, 10.0, 60.0)))


@st.composite
def leaves(draw: st.DrawFn) -> Leaf:
    op = draw(st.sampled_from(OPS))
    return Leaf(draw(st.sampled_from(FIELDS)), op, draw(_literal(op)))


conditions: st.SearchStrategy[Condition] = st.recursive(
    leaves() | st.just(TRUE),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map(lambda items: All(tuple(items))),
        st.lists(inner, min_size=1, max_size=4).map(lambda items: Any_(tuple(items))),
        inner.map(Not),
    ),
    max_leaves=10,
)


@st.composite
def records(draw: st.DrawFn, index: int) -> dict[str, Any]:
    record: dict[str, Any] = {"id": f"acc{index}", "segment": "tech_touch"}
    for name in FIELDS:
        if draw(st.booleans()):
            value = draw(SCALARS | st.lists(st.sampled_from(TEXTS), max_size=2))
            if name.startswith("event."):
                record["event"] = {"name": "nps", name[6:]: value}
            else:
                record[name] = value
    changed = draw(st.lists(st.sampled_from(FIELDS[:7]), max_size=3, unique=True))
    record["_changes"] = {name: draw(SCALARS | st.none()) for name in changed}
    record["_health_history"] = tuple(draw(st.lists(HISTORY_ROW, max_size=3)))  # what trend leaves read
    return record


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Rules, list[dict[str, Any]], ZoneInfo, datetime]:
    rules = [(f"rule{i}", draw(conditions)) for i in range(draw(st.integers(1, 4)))]
    recs = [draw(records(i)) for i in range(draw(st.integers(1, 12)))]
    now = NOW + timedelta(seconds=draw(st.sampled_from((0, 1, -1, DAY, 5 * 3600))))
    return rules, recs, draw(ZONES), now


def expected(rules: list[tuple[str, Condition]], recs: list[dict[str, Any]], tz: ZoneInfo,
             now: datetime) -> dict[str, frozenset[str]]:
    out = {}
    for record in recs:
        ids = frozenset(rule_id for rule_id, cond in rules if evaluate(cond, record, now, tz))
        if ids:
            out[record["id"]] = ids
    return out


def run(engine: RuleEngine, recs: Any, now: datetime) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for account, ids in engine.match(recs, now):
        assert account not in out, f"{account} yielded twice"
        out[account] = ids
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_agrees_with_reference_in_process(scenario: Any) -> None:
    rules, recs, tz, now = scenario
    with RuleEngine(rules, tz, batch_size=5) as engine:
        assert run(engine, recs, now) == expected(rules, recs, tz, now)
        assert engine.failures == []
        later = now + timedelta(days=3)  # compiled once, reused at another time
        assert run(engine, recs, later) == expected(rules, recs, tz, later)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_agrees_with_reference_in_workers(scenario: Any) -> None:
    rules, recs, tz, now = scenario
    with RuleEngine(rules, tz, workers=2, batch_size=3) as engine:
        assert run(engine, recs, now) == expected(rules, recs, tz, now)
        assert engine.failures == []


def test_facts_are_flat_with_safe_keys_and_no_missing_values() -> None:
    conds = [Leaf("event.score", "lte", 6), Leaf("last_login_at", "older_than", 7 * DAY),
             Leaf("name", "matches", "^A"), Leaf("arr", "gt", 5)]
    builder = fact_builder(conds, ZoneInfo("UTC"))
    fact = builder.build({"id": "a", "event": {"score": 3}, "last_login_at": NOW - timedelta(days=8),
                          "name": "Acme"}, NOW)
    assert all(key.replace("_", "").isalnum() for key in fact)
    assert fact[builder.key("event.score", "n")] == 3
    assert fact[builder.key("last_login_at", "a")] == 8 * DAY * 1_000_000
    assert builder.key("arr", "p") not in fact
    key = builder.computed_key(conds[2])
    assert key is not None and fact[key] == 1


def test_empty_condition_always_matches_and_duplicates_are_reported_once() -> None:
    either = Any_((Leaf("n", "gt", 1), Leaf("n", "gt", 2), Not(Leaf("s", "eq", "a"))))
    rules: Rules = [("always", TRUE), ("either", either)]
    with RuleEngine(rules, ZoneInfo("UTC")) as engine:
        assert run(engine, [{"id": "a", "n": 5}, {"id": "b"}], NOW) == {
            "a": frozenset({"always", "either"}), "b": frozenset({"always", "either"})}


def test_two_engines_in_one_process_do_not_interfere() -> None:
    tz = ZoneInfo("UTC")
    big, small = [("big", Leaf("n", "gt", 10))], [("small", Leaf("n", "lt", 10))]
    with RuleEngine(big, tz) as one, RuleEngine(small, tz) as two:
        recs = [{"id": "a", "n": 20}, {"id": "b", "n": 1}]
        assert run(one, recs, NOW) == {"a": frozenset({"big"})}
        assert run(two, recs, NOW) == {"b": frozenset({"small"})}
        assert run(one, recs, NOW) == {"a": frozenset({"big"})}


def test_a_record_the_engine_refuses_is_reported_and_the_rest_evaluated() -> None:
    recs = [{"id": f"a{i}", "s": "x"} for i in range(10)]
    recs[4]["s"] = "\ud800"  # a lone surrogate cannot be handed to the engine's UTF-8 reader
    with RuleEngine([("r", Leaf("s", "eq", "x"))], ZoneInfo("UTC")) as engine:
        got = run(engine, recs, NOW)
        assert got == {f"a{i}": frozenset({"r"}) for i in range(10) if i != 4}
        assert [account for account, _ in engine.failures] == ["a4"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        RuleEngine([], ZoneInfo("UTC"), workers=-1)
    with pytest.raises(ValueError):
        RuleEngine([], ZoneInfo("UTC"), batch_size=0)


REALISTIC: Rules = [
    ("no-login-7d", All((Leaf("last_login_at", "older_than", 7 * DAY),
                         Leaf("lifecycle_stage", "in", ("onboarding", "adopted")),
                         Not(Leaf("status", "eq", "churned"))))),
    ("renewal-30d", Leaf("renewal_date", "within_next", 30 * DAY)),
    ("renewal-far", Leaf("renewal_date", "beyond_next", 90 * DAY)),
    ("big", Leaf("arr", "gte", 100000)),
    ("mid", Leaf("arr", "between", (20000, 99999.99))),
    ("detractor", All((Leaf("nps", "lte", 6), Leaf("nps", "exists", True)))),
    ("escalated", Any_((Leaf("open_escalations", "gt", 2), Leaf("health", "lt", 40)))),
    ("enterprise-name", Leaf("name", "matches", r"(?i)\b(inc|corp)\b")),
    ("plan-upgrade", Leaf("plan", "changed_to", "pro")),
    ("not-pro", Not(Leaf("plan", "in", ("pro", "enterprise")))),
]


def generate(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(count):
        record: dict[str, Any] = {"id": f"acc{i:07d}", "segment": "tech_touch", "_changes": {}}
        optional = {
            "name": rng.choice(["Acme Inc", "Globex Corp", "Initech", "corporate llc"]),
            "arr": rng.choice([rng.randint(0, 200000), rng.random() * 150000]),
            "plan": rng.choice(["basic", "pro", "enterprise"]),
            "lifecycle_stage": rng.choice(["onboarding", "adopted", "renewing"]),
            "status": rng.choice(["active", "churned"]),
            "renewal_date": date(2026, 11, 10) + timedelta(days=rng.randint(-30, 200)),
            "last_login_at": NOW - timedelta(seconds=rng.randint(0, 20 * DAY)),
            "open_escalations": rng.randint(0, 5), "nps": rng.randint(0, 10), "health": rng.randint(0, 100),
        }
        record.update({k: v for k, v in optional.items() if rng.random() < 0.9})
        if rng.random() < 0.2:
            record["_changes"]["plan"] = "basic"
        yield record


@pytest.mark.slow
def test_twenty_thousand_accounts_through_the_worker_pool() -> None:
    tz = ZoneInfo("Europe/Paris")
    with RuleEngine(REALISTIC, tz, workers=2) as engine:
        got = run(engine, generate(20_000), NOW)
        assert engine.failures == []
    want = expected(REALISTIC, list(generate(20_000)), tz, NOW)
    assert len(want) > 15_000
    assert got == want


def _worker_pids() -> list[int]:
    me = os.getpid()
    pids = []
    for task in Path(f"/proc/{me}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                pids.append(int(child))
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_results_stay_complete() -> None:
    tz = ZoneInfo("UTC")
    killed = []
    got: dict[str, frozenset[str]] = {}
    with RuleEngine(REALISTIC, tz, workers=2, batch_size=200) as engine:
        for n, (account, ids) in enumerate(engine.match(generate(20_000, seed=3), NOW)):
            if n == 1000:
                victims = _worker_pids()
                assert victims, "no worker process found"
                os.kill(victims[0], signal.SIGKILL)
                killed.append(victims[0])
            got[account] = ids
        assert engine.failures == []
        assert killed[0] not in _worker_pids()
    assert got == expected(REALISTIC, list(generate(20_000, seed=3)), tz, NOW)


class Poison:
    """Kills the process that unpickles it: stands in for an account that crashes the engine."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return os._exit, (70,)


def test_an_account_that_keeps_crashing_workers_is_isolated() -> None:
    tz = ZoneInfo("UTC")
    recs = list(generate(60, seed=5))
    recs[37] = {"id": "poison", "arr": Poison(), "_changes": {}}
    with RuleEngine(REALISTIC, tz, workers=2, batch_size=8) as engine:
        got = run(engine, recs, NOW)
        assert [account for account, _ in engine.failures] == ["poison"]
    assert got == expected(REALISTIC, recs[:37] + recs[38:], tz, NOW)


class Hang:
    """Never finishes unpickling: stands in for an account the engine would spin on for good."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return time.sleep, (3600,)


def test_an_account_that_runs_past_the_batch_limit_is_isolated_and_the_rest_evaluated() -> None:
    tz = ZoneInfo("UTC")
    recs = list(generate(40, seed=9))
    recs[13] = {"id": "spinner", "arr": Hang(), "_changes": {}}
    with RuleEngine(REALISTIC, tz, workers=2, batch_size=8, batch_seconds=2) as engine:
        got = run(engine, recs, NOW)
        ((account, why),) = engine.failures
    assert account == "spinner" and "limits.evaluate_batch_seconds (2 s)" in why
    assert got == expected(REALISTIC, recs[:13] + recs[14:], tz, NOW)


def test_a_matches_condition_that_backtracks_in_python_is_evaluated_through_the_workers() -> None:
    rules: Rules = [("aaa", Leaf("name", "matches", "^(a+)+$"))]
    recs = [{"id": "x", "name": "a" * 40 + "b", "_changes": {}}, {"id": "y", "name": "a" * 40, "_changes": {}}]
    with RuleEngine(rules, ZoneInfo("UTC"), workers=1, batch_seconds=30) as engine:
        assert run(engine, recs, NOW) == {"y": frozenset({"aaa"})}
        assert engine.failures == []


@pytest.mark.parametrize("op", ["older_than", "within_last", "within_next", "beyond_next"])
def test_calendar_months_agree_with_the_reference_evaluator(op: str) -> None:
    # NOW is 10 November: three months are 10 August back and 10 February ahead, not 90 days
    edges = [datetime(2026, 8, 10, 12, tzinfo=UTC), datetime(2027, 2, 10, 12, tzinfo=UTC)]
    moments = [edge + timedelta(seconds=k) for edge in edges for k in (-1, 0, 1)]
    moments += [NOW - timedelta(days=90), NOW + timedelta(days=90), date(2026, 8, 10), date(2027, 2, 10)]
    recs = [{"id": f"a{i}", "seen": m} for i, m in enumerate(moments)]
    leaf = Leaf("seen", op, Months(3))
    with RuleEngine([("r", leaf)], ZoneInfo("UTC")) as engine:
        got = run(engine, recs, NOW)
    expected = {r["id"]: frozenset({"r"}) for r in recs if evaluate(leaf, r, NOW, ZoneInfo("UTC"))}
    assert got == expected
    assert expected  # every operator matches some of these moments, and misses others
    assert len(expected) < len(recs)
