"""Range planning and work on the real PostgreSQL and SQLite."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from playbookd.engine import ranges
from playbookd.service import cycle
from playbookd.store.schema import accounts, enrollments, outbox
from playbookd.store.schema import ranges as range_table
from playbookd.sync.run import sync

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def add_accounts(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(accounts), [{"id": f"A{i:04d}", "segment": "s", "data": {}, "changes": {},
                                         "synced_at": NOW, "created_at": NOW} for i in range(n)])


def test_ranges_cover_every_account_once(engine: Engine) -> None:
    add_accounts(engine, 103)
    assert ranges.plan(engine, NOW, 25) == 5
    with engine.connect() as conn:
        bounds = [(r.lo, r.hi) for r in conn.execute(select(range_table).order_by(range_table.c.id))]
        ids = list(conn.execute(select(accounts.c.id).order_by(accounts.c.id)).scalars())
    assert bounds[0][0] is None and bounds[-1][1] is None
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    covered = [i for i in ids for lo, hi in bounds if (lo is None or i >= lo) and (hi is None or i < hi)]
    assert covered == ids


def test_empty_store_plans_one_range(engine: Engine) -> None:
    assert ranges.plan(engine, NOW, 25) == 1


def test_due_steps_left_by_a_replica_that_died_after_enrolling_are_advanced(make: Any, pg_url: str) -> None:
    project = make({"hello": "id: hello\ntrigger: {when: {status: active}}\nsteps:\n"
                             "  - email: {template: login_nudge, to: admin}\n"}, database=pg_url)
    sync(project.engine, project.config)
    assert ranges.plan(project.engine, NOW, 25) == 1
    assert ranges.work(project.runtime, project.engine) == 1  # enrolled; then the replica died
    assert project.rows(outbox) == []
    assert cycle.evaluate_ranges(project.runtime, project.engine)  # another replica, no range left
    assert [r.state for r in project.rows(outbox)] == ["queued"]
    assert not cycle.evaluate_ranges(project.runtime, project.engine)  # nothing left to move


HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,last_login_at\n"
QUIET = "id: quiet\ntrigger: {when: {last_login_at: {older_than: 7d}}}\nsteps:\n  - task: {title: t, assign: csm}\n"
PRO = "id: pro\ntrigger: {when: {plan: pro}}\nsteps:\n  - task: {title: t, assign: csm}\n"


def _accounts_csv(plans: dict[str, str], logins: dict[str, datetime]) -> str:
    return HEADER + "".join(f"{key},Acme,5000,active,{plan},adopted,maria@acme.example,"
                            f"{logins[key]:%Y-%m-%dT%H:%M:%SZ}\n" for key, plan in sorted(plans.items()))


def test_ranges_after_a_full_evaluation_look_at_changed_and_due_accounts_only(make: Any, db_url: str) -> None:
    keys = [f"ACC-{i}" for i in range(8)]
    plans = dict.fromkeys(keys, "basic")
    logins = dict.fromkeys(keys, NOW)
    logins["ACC-6"] = NOW - timedelta(days=7) + timedelta(minutes=30)  # quiet for 7 days within the hour
    project = make({"quiet": QUIET, "pro": PRO}, accounts_csv=_accounts_csv(plans, logins), database=db_url)
    sync(project.engine, project.config, now=NOW)
    assert ranges.plan(project.engine, NOW, 3, project.runtime) == 3
    ranges.work(project.runtime, project.engine)
    assert project.rows(enrollments) == []
    plans["ACC-1"] = plans["ACC-4"] = "pro"
    project.set_accounts(_accounts_csv(plans, logins))
    later = NOW + timedelta(hours=1)
    sync(project.engine, project.config, now=later)
    ranges.plan(project.engine, later, 3, project.runtime)
    with project.engine.connect() as conn:
        flags = list(conn.execute(select(range_table.c.full).where(range_table.c.run_at == later)).scalars())
    assert flags == [False, False, False]
    assert ranges.work(project.runtime, project.engine) == 3
    assert sorted((r.playbook_id, r.account_id) for r in project.rows(enrollments)) == [
        ("pro", "ACC-1"), ("pro", "ACC-4"), ("quiet", "ACC-6")]
