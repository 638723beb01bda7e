"""Rules-engine worker processes: started only for batches that need them, kept between evaluations
of the same rules."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from playbookd.engine import rules as R
from playbookd.engine.rules import RuleEngine
from playbookd.model.conditions import All, Condition, Leaf, Not
from playbookd.model.evaluation import evaluate

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TZ = ZoneInfo("UTC")
DAY = 86_400
REALISTIC: list[tuple[str, Condition]] = [
    ("no-login-7d", All((Leaf("last_login_at", "older_than", 7 * DAY), Not(Leaf("status", "eq", "churned"))))),
    ("big", Leaf("arr", "gte", 100000)),
    ("detractor", Leaf("nps", "lte", 6)),
]


def generate(count: int, seed: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(count):
        yield {"id": f"acc{i:07d}", "segment": "tech_touch", "_changes": {}, "arr": rng.randint(0, 200000),
               "status": rng.choice(["active", "churned"]), "nps": rng.randint(0, 10),
               "last_login_at": NOW - timedelta(seconds=rng.randint(0, 20 * DAY))}


def expected(rules: list[tuple[str, Condition]], recs: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """What the reference evaluator says each account matches."""
    found = {r["id"]: frozenset(i for i, cond in rules if evaluate(cond, r, NOW, TZ)) for r in recs}
    return {account: ids for account, ids in found.items() if ids}


def run(engine: RuleEngine, recs: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    return dict(engine.match(recs, NOW))


def spawned() -> set[int]:
    """This process's spawned children, alive or not yet reaped."""
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.add(int(child))
            except FileNotFoundError:  # reaped meanwhile
                continue
    return pids


_others: set[int] = set()


def worker_pids() -> set[int]:
    """The rules-engine workers: children spawned since the test began (other tests in this process
    may keep render workers)."""
    return spawned() - _others


@pytest.fixture(autouse=True)
def no_idle_workers() -> Iterator[None]:
    R.close_idle()
    _others.clear()
    _others.update(spawned())
    yield
    R.close_idle()


def test_no_account_to_match_starts_no_worker_process() -> None:
    with RuleEngine(REALISTIC, TZ, workers=2) as engine:
        assert run(engine, []) == {}
        assert worker_pids() == set()


def test_one_batch_starts_one_worker_process() -> None:
    recs = list(generate(30, seed=2))
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=500) as engine:
        assert run(engine, recs) == expected(REALISTIC, recs)
        assert len(worker_pids()) == 1


def test_the_next_engine_of_the_same_rules_reuses_its_workers() -> None:
    recs = list(generate(400, seed=4))
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=100) as engine:
        first = run(engine, recs)
        started = worker_pids()
    assert len(started) == 2 and worker_pids() == started  # kept, idle
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=100) as engine:
        assert run(engine, recs) == first == expected(REALISTIC, recs)
        assert worker_pids() == started


def test_other_rules_get_workers_of_their_own_and_at_most_two_rulesets_stay() -> None:
    recs = list(generate(50, seed=6))
    kept: list[set[int]] = []
    for n in range(3):
        rules = [*REALISTIC, (f"extra{n}", Leaf("arr", "gte", 1000 * n))]
        with RuleEngine(rules, TZ, workers=1) as engine:
            assert run(engine, recs) == expected(rules, recs)
            kept.append(worker_pids() - set().union(*kept[:n]))
            assert len(kept[n]) == 1, "the workers of other rules are not used"
    assert worker_pids() == kept[1] | kept[2]  # the oldest were stopped


def test_a_kept_worker_that_died_is_replaced_and_nothing_is_lost() -> None:
    recs = list(generate(300, seed=8))
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=50) as engine:
        run(engine, recs)
    victim = min(worker_pids())
    os.kill(victim, signal.SIGKILL)
    while Path(f"/proc/{victim}/stat").read_text().split(")")[-1].split()[0] != "Z":
        time.sleep(0.01)  # dead, not yet reaped: the next engine finds it so
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=50) as engine:
        assert run(engine, recs) == expected(REALISTIC, recs)
        assert engine.failures == []
        assert victim not in worker_pids()


def test_a_stream_left_unfinished_keeps_no_worker() -> None:
    recs = list(generate(2000, seed=1))
    with RuleEngine(REALISTIC, TZ, workers=2, batch_size=50) as engine:
        next(iter(engine.match(recs, NOW)))
    assert worker_pids() == set()
