"""The claim's query plan on a real SQLite file and PostgreSQL: the queue's order comes from an index,
so a round reads its first rows instead of sorting every queued message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine

from playbookd.delivery import claims
from playbookd.store.database import transaction
from playbookd.store.schema import outbox

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


def queued(count: int) -> list[dict[str, Any]]:
    return [{"key": f"k:{n}", "message_id": f"<{n}@plan.example>", "playbook_id": "p", "account_id": f"A{n % 7}",
             "to_addr": f"u{n}@plan.example", "template": "t", "category": "c", "priority": n % 3, "subject": "s",
             "html": "h", "text": "t", "headers": {}, "state": "queued" if n % 4 else "sent", "attempts": 0,
             "not_before": NOW, "created_at": NOW} for n in range(count)]


@pytest.fixture
def explained(engine: Engine) -> Iterator[list[bool]]:
    """While its flag is set, every statement the engine runs is EXPLAINed instead of run."""
    on = [False]

    def prefix(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> tuple[str, Any]:
        if on[0]:
            statement = ("EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN ") + statement
        return statement, params

    event.listen(engine, "before_cursor_execute", prefix, retval=True)
    yield on
    event.remove(engine, "before_cursor_execute", prefix)


@pytest.mark.parametrize("held", [(), ("paused",)])
@pytest.mark.parametrize("analyzed", [False, True], ids=["no statistics", "analyzed"])
def test_the_claim_reads_the_queue_in_order_off_an_index(engine: Engine, explained: list[bool],
                                                         held: tuple[str, ...], analyzed: bool) -> None:
    with transaction(engine) as conn:
        conn.execute(insert(outbox), queued(400))
        if analyzed:  # a store nobody ran ANALYZE on (SQLite's usual case) plans with the planner's guesses
            conn.execute(text("ANALYZE"))
        if conn.dialect.name == "postgresql":
            # small tables: without these the planner may rightly prefer a scan and a sort; with them it
            # sorts only when no index gives the order
            conn.execute(text("SET LOCAL enable_sort = off"))
            conn.execute(text("SET LOCAL enable_seqscan = off"))
        explained[0] = True
        plan = "\n".join(str(row[-1] if conn.dialect.name == "sqlite" else row[0])
                         for row in claims._due(conn, NOW, 50, held))
        explained[0] = False
    assert "ix_outbox_claim" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
