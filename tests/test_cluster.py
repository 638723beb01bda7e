"""Leadership and range planning on the real PostgreSQL (and the single-node SQLite case)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from playbookd import cluster
from playbookd.db import connect
from playbookd.schema import accounts, ranges

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def add_accounts(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(accounts), [{"id": f"A{i:04d}", "segment": "s", "data": {}, "changes": {},
                                         "synced_at": NOW, "created_at": NOW} for i in range(n)])


def test_ranges_cover_every_account_once(engine: Engine) -> None:
    add_accounts(engine, 103)
    assert cluster.plan(engine, NOW, 25) == 5
    with engine.connect() as conn:
        bounds = [(r.lo, r.hi) for r in conn.execute(select(ranges).order_by(ranges.c.id))]
        ids = list(conn.execute(select(accounts.c.id).order_by(accounts.c.id)).scalars())
    assert bounds[0][0] is None and bounds[-1][1] is None
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    covered = [i for i in ids for lo, hi in bounds if (lo is None or i >= lo) and (hi is None or i < hi)]
    assert covered == ids


def test_empty_store_plans_one_range(engine: Engine) -> None:
    assert cluster.plan(engine, NOW, 25) == 1


def test_one_leader_at_a_time_and_takeover_on_release(pg_url: str) -> None:
    first, second = connect(pg_url), connect(pg_url)
    a, b = cluster.Leadership(first), cluster.Leadership(second)
    try:
        assert a.hold() and not b.hold()
        assert a.hold()  # still held on the next check
        a.release()  # as when the leader's process dies and PostgreSQL ends its session
        assert b.hold() and not a.hold()
    finally:
        a.release()
        b.release()
        first.dispose()
        second.dispose()


def test_sqlite_is_always_its_own_leader(tmp_path: object) -> None:
    engine = connect(f"sqlite:///{tmp_path}/x.db")
    assert cluster.Leadership(engine).hold()
