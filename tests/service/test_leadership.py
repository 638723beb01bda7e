"""Leadership on the real PostgreSQL (and the single-node SQLite case)."""

from __future__ import annotations

from playbookd.service.leadership import Leadership
from playbookd.store.database import connect


def test_one_leader_at_a_time_and_takeover_on_release(pg_url: str) -> None:
    first, second = connect(pg_url), connect(pg_url)
    a, b = Leadership(first), Leadership(second)
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
    assert Leadership(engine).hold()
