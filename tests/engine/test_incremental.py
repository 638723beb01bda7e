"""Incremental evaluation enrolls, exits and converts exactly as a full one: two projects on the same
data over simulated days, one evaluating only changed or due accounts, the other every account every
time, on random populations and random time-based playbooks; and what the pre-filter (engine.narrow)
reads finds the candidates every account gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cycle_helpers import Project

from playbookd.engine import enroll, scope
from playbookd.engine.ledger import Ledger
from playbookd.engine.narrow import split
from playbookd.model.evaluation import epoch_us
from playbookd.service import cycle
from playbookd.store import marks, state
from playbookd.store.schema import enrollments

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
STEP = timedelta(hours=6)
STEPS = 30
ACCOUNTS = 60
HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,nps,seat_utilization," \
         "last_login_at,renewal_date,signup_date\n"
TIMED = ("last_login_at", "renewal_date", "signup_date")
OPS = ("older_than", "within_last", "within_next", "beyond_next")
SPANS = ("12h", "1d", "2d", "3d", "5d", "1mo")
PLANS = ("basic", "pro", "enterprise")
COMPARED = ("playbook_id", "account_id", "state", "step", "entered_at", "finished_at", "reason", "goal_met_at",
            "goal_at_entry")


def _time_leaf(rng: random.Random) -> str:
    return f"{{{rng.choice(TIMED)}: {{{rng.choice(OPS)}: {rng.choice(SPANS)}}}}}"


def _condition(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.45:
        items = ", ".join(_condition(rng, depth + 1) for _ in range(rng.randint(2, 3)))
        return f"{{{rng.choice(('all', 'any'))}: [{items}]}}"
    if depth < 2 and roll < 0.55:
        return f"{{not: {_condition(rng, depth + 1)}}}"
    if roll < 0.85:
        return _time_leaf(rng)
    if roll < 0.93:
        return f"{{plan: {rng.choice(PLANS)}}}"
    return f"{{nps: {{lte: {rng.randint(3, 8)}}}}}"


def playbooks(rng: random.Random, count: int = 5) -> dict[str, str]:
    found = {}
    for i in range(count):
        text = f"id: p{i}\ntrigger: {{when: {_condition(rng)}}}\n"
        if rng.random() < 0.6:
            text += f"reenter_after: {rng.choice(('1d', '2d', '12h'))}\n"
        if rng.random() < 0.6:
            text += f"exit_when: {_condition(rng)}\n"
        if rng.random() < 0.5:
            text += f"goal: {{when: {_condition(rng)}, within: 5d}}\n"
        text += f"steps:\n  - wait: {rng.choice(('12h', '1d', '3d'))}\n  - task: {{title: t{i}, assign: csm}}\n"
        found[f"p{i}"] = text
    # a `changed` trigger: its answer flips as the evaluation consumes the change
    found["moved"] = "id: moved\ntrigger: {when: {not: {nps: {changed: true}}}}\nreenter_after: 1d\n" \
                     "steps:\n  - wait: 1d\n  - task: {title: m, assign: csm}\n"
    return found


def _moment(rng: random.Random, low_days: float, high_days: float) -> datetime:
    return T0 + timedelta(seconds=rng.uniform(low_days, high_days) * 86_400)


def _account(rng: random.Random, clock: datetime) -> dict[str, Any]:
    return {"name": "Acme", "annual_revenue": rng.choice((5000, 30000, 150000)), "status": "active",
            "plan": rng.choice(PLANS), "lifecycle_stage": "adopted", "csm_email": "maria@acme.example",
            "nps": rng.randint(0, 10), "seat_utilization": rng.randint(10, 100),
            "last_login_at": (clock - timedelta(seconds=rng.uniform(0, 6 * 86_400))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "renewal_date": _moment(rng, -5, 40).date().isoformat(),
            "signup_date": _moment(rng, -40, 0).date().isoformat()}


def _change(rng: random.Random, account: dict[str, Any], clock: datetime) -> None:
    fresh = _account(rng, clock)
    for name in rng.sample(sorted(fresh), rng.randint(1, 3)):
        account[name] = fresh[name]
    if rng.random() < 0.05:
        account["status"] = "churned"


def csv_of(population: dict[str, dict[str, Any]]) -> str:
    columns = HEADER.strip().split(",")[1:]
    return HEADER + "".join(f"{key}," + ",".join(str(row[c]) for c in columns) + "\n"
                            for key, row in sorted(population.items()))


def _project(path: Path, url: str, books: dict[str, str], text: str, full_every: str) -> Project:
    path.mkdir()
    return Project(path, books, accounts_csv=text, database=url,
                   evaluation={"workers": 1, "full_every": full_every})


def _state(project: Project) -> list[tuple[Any, ...]]:
    # sorted: a pre-filtered evaluation enrols playbook by playbook in other interleavings (engine.narrow)
    return sorted((tuple(getattr(r, c) for c in COMPARED) for r in project.rows(enrollments)), key=repr)


def second_database(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/reference.db"
    return str(request.getfixturevalue("pg_url"))


def simulate(db_url: str, other_url: str, tmp_path: Path, seed: int) -> tuple[Project, int]:
    rng = random.Random(seed)
    books = playbooks(rng)
    population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(ACCOUNTS)}
    incremental = _project(tmp_path / "incremental", db_url, books, csv_of(population), "30d")
    reference = _project(tmp_path / "reference", other_url, books, csv_of(population), "1s")
    enrolled = 0
    for step in range(STEPS):
        at = T0 + step * STEP
        if step:
            for key in rng.sample(sorted(population), rng.randint(1, 4)):  # a few percent of the accounts
                _change(rng, population[key], at)
            for project in (incremental, reference):
                project.set_accounts(csv_of(population))
        for project in (incremental, reference):
            project.run(at)
        expected = _state(reference)
        assert _state(incremental) == expected, f"seed {seed}: the evaluations disagree after step {step} ({at})"
        enrolled = len(expected)
    reference.engine.dispose()
    return incremental, enrolled


def test_incremental_evaluation_enrolls_exits_and_converts_as_a_full_one(
        db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    seed = 11 if db_url.startswith("sqlite") else 23  # one population per database: more cases, same time
    incremental, enrolled = simulate(db_url, second_database(db_url, request, tmp_path), tmp_path, seed)
    try:
        assert enrolled >= 10, "the scenario must enroll someone to prove anything"
        # only the first evaluation looked at every account: all the others were incremental
        assert state.get(incremental.engine, scope.KEY)["at"] == T0.isoformat()
    finally:
        incremental.engine.dispose()


def test_the_prefilter_finds_the_candidates_every_account_gives(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(41 if db_url.startswith("sqlite") else 43)
    found = narrowed = 0
    for round_ in range(3):
        books = {k: v for k, v in playbooks(rng, 6).items() if k != "moved"}  # `changed`: never narrowed
        population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(80)}
        project = Project(tmp_path / str(round_), books, accounts_csv=csv_of(population), database=db_url,
                          evaluation={"workers": 0})
        try:
            rt, config = project.runtime, project.runtime.config
            cycle.run_sync(rt, project.engine, now=T0)
            for step in range(8):
                at = T0 + step * timedelta(hours=17)
                parts = split([(p, enroll.entry_condition(p, rt.exit_when)) for p in rt.playbooks], at, config.tz,
                              project.engine.dialect.name)
                narrowed += not parts.open
                config.evaluation.prefilter = True
                with_it = [(c.playbook.id, c.account_id) for c in enroll.candidates(rt, project.engine, at)]
                full_with = _full_evaluation(rt, project.engine, at)
                config.evaluation.prefilter = False
                without = [(c.playbook.id, c.account_id) for c in enroll.candidates(rt, project.engine, at)]
                assert with_it == without, f"round {round_} at {at}"
                # a full evaluation reads every account for its due time: the same due times, the
                # candidates of the rules engine over every account
                assert full_with == _full_evaluation(rt, project.engine, at), f"round {round_} at {at}"
                found += len(without)
        finally:
            project.engine.dispose()
    assert found >= 50 and narrowed >= 8, "the scenarios must match accounts and narrow to prove anything"


def _full_evaluation(rt: Any, engine: Any, at: datetime) -> tuple[list[tuple[str, str]], list[Any]]:
    ledger = Ledger(scope.due_times(rt, rt.playbooks), at)
    found = sorted((c.playbook.id, c.account_id) for c in enroll.candidates(rt, engine, at, scope=scope.FULL,
                                                                             ledger=ledger))
    return found, sorted(ledger.seen)


PLAN = "id: pro\ntrigger: {when: {plan: pro}}\nsteps:\n  - task: {title: t, assign: csm}\n"


def test_only_the_accounts_a_sync_changed_are_looked_at_again(make: Any, db_url: str) -> None:
    rng = random.Random(5)
    population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(20)}
    project = make({"pro": PLAN}, accounts_csv=csv_of(population), database=db_url)
    project.run(T0)
    entered = {r.account_id for r in project.rows(enrollments)}
    assert entered, "the population must have pro accounts"
    now_us = epoch_us(T0 + 2 * STEP, ZoneInfo("UTC"))
    # who entered (and whose enrollment then completed) is looked at once more, then nobody
    assert set(marks.pending(project.engine, now_us)) == entered
    project.run(T0 + STEP)
    assert marks.pending(project.engine, now_us) == {}
    population["ACC-007"]["nps"] = (population["ACC-007"]["nps"] + 1) % 11
    switched = next(key for key, row in sorted(population.items()) if row["plan"] != "pro")
    population[switched]["plan"] = "pro"
    project.set_accounts(csv_of(population))
    cycle.run_sync(project.runtime, project.engine, now=T0 + 2 * STEP)
    assert sorted(marks.pending(project.engine, now_us)) == sorted({"ACC-007", switched})
    project.run(T0 + 2 * STEP)
    assert {r.account_id for r in project.rows(enrollments)} == entered | {switched}
    assert set(marks.pending(project.engine, now_us)) == {switched}


@pytest.mark.parametrize("full", [True, False])
def test_a_write_after_goals_and_exits_read_an_account_is_not_cleared(make: Any, db_url: str, full: bool) -> None:
    """A bounce or a `set` step on another thread can commit while an evaluation runs: what its
    goals and exits read must not be marked seen by the entry pass that read the write."""
    from playbookd.engine.enroll import evaluate_range
    from playbookd.store.database import transaction

    rng = random.Random(7)
    population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(10)}
    project = make({"pro": PLAN}, accounts_csv=csv_of(population), database=db_url)
    project.run(T0)
    project.run(T0 + STEP)
    now = T0 + 2 * STEP
    now_us = epoch_us(now, ZoneInfo("UTC"))
    assert marks.pending(project.engine, now_us) == {}
    with transaction(project.engine) as conn:  # written before the evaluation: in its scope
        marks.touch(conn, ["ACC-003"])
    seen = scope.scope(project.runtime, project.engine, now, full, project.runtime.playbooks)
    with transaction(project.engine) as conn:  # after goals and exits, before entry: the race
        marks.touch(conn, ["ACC-003"])
    evaluate_range(project.runtime, project.engine, now, scope=seen)
    assert set(marks.pending(project.engine, now_us)) == {"ACC-003"}


def test_accounts_are_marked_seen_when_no_state_triggered_playbook_is_live(make: Any, db_url: str) -> None:
    """With nothing to enter, an evaluation still reads the accounts in its scope (goals, exits): it
    must mark them seen, or each later one reads every account a sync ever wrote."""
    rng = random.Random(9)
    population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(10)}
    paused = PLAN.replace("id: pro\n", "id: pro\nstatus: paused\n")
    project = make({"pro": paused}, accounts_csv=csv_of(population), database=db_url)
    project.run(T0)
    now_us = epoch_us(T0 + 2 * STEP, ZoneInfo("UTC"))
    assert marks.pending(project.engine, now_us) == {}
    population["ACC-002"]["nps"] = (population["ACC-002"]["nps"] + 1) % 11
    project.set_accounts(csv_of(population))
    cycle.run_sync(project.runtime, project.engine, now=T0 + STEP)
    assert set(marks.pending(project.engine, now_us)) == {"ACC-002"}
    project.run(T0 + STEP)
    assert marks.pending(project.engine, now_us) == {}
    assert project.rows(enrollments) == []


def test_a_full_evaluation_consumes_the_changes_of_accounts_the_prefilter_keeps_from_the_rules_engine(
        make: Any, db_url: str) -> None:
    from playbookd.store.schema import accounts

    rng = random.Random(13)
    population = {f"ACC-{i:03d}": _account(rng, T0) for i in range(12)}
    project = make({"pro": PLAN}, accounts_csv=csv_of(population), database=db_url)
    project.run(T0)
    other = next(key for key, row in sorted(population.items()) if row["plan"] != "pro")
    population[other]["nps"] = (population[other]["nps"] + 1) % 11
    project.set_accounts(csv_of(population))
    cycle.run_sync(project.runtime, project.engine, now=T0 + STEP)
    assert project.rows(accounts, accounts.c.id == other)[0].changes, "the sync must record a change"
    seen = scope.scope(project.runtime, project.engine, T0 + 2 * STEP, True, project.runtime.playbooks)
    enroll.evaluate_range(project.runtime, project.engine, T0 + 2 * STEP, scope=seen)
    assert project.rows(accounts, accounts.c.id == other)[0].changes == {}
