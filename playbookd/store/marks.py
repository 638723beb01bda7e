"""What an incremental evaluation reads: accounts written since an evaluation last saw them, and
accounts whose next time-based flip has come.

`unseen` is a per-account count of writes, not a timestamp or a global sequence: a writer adds one,
and an evaluation that read the count n sets it back to 0 only if it is still n. A write that
commits while the evaluation runs, before or after the evaluation read the account, leaves the count
above 0, so the next evaluation looks again; no clock is compared, and replicas or a sync running
alongside never make a change disappear.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, or_, select, update

from playbookd.store.chunks import chunked
from playbookd.store.database import transaction
from playbookd.store.schema import accounts

IdRange = tuple[str | None, str | None] | None
Mark = tuple[str, int, int | None]  # account id, `unseen` as read, the due time to store


UNSEEN = ("unseen",)  # for store.bulk.update_rows(increment=...): the bulk writers' bump


def bump() -> Any:
    """The value a writer sets `unseen` to."""
    return accounts.c.unseen + 1


def touch(conn: Connection, account_ids: Iterable[str]) -> None:
    """Something an evaluation reads changed for these accounts (contacts, enrollments ...)."""
    for batch in chunked(sorted(set(account_ids))):
        conn.execute(update(accounts).where(accounts.c.id.in_(batch)).values(unseen=bump()))


def in_range(query: Any, column: Any, id_range: IdRange) -> Any:
    """`query` kept to the account ids `column` holds within [low, high) (a replica's range)."""
    low, high = id_range or (None, None)
    if low is not None:
        query = query.where(column >= low)
    if high is not None:
        query = query.where(column < high)
    return query


def pending(engine: Engine, now_us: int, id_range: IdRange = None) -> dict[str, int]:
    """Accounts (of `id_range`) written since last seen, or due by `now_us`: id -> `unseen` as read.
    Both tests are on indexed columns, so the cost follows how many accounts qualify."""
    due = or_(accounts.c.unseen > 0, accounts.c.due_us <= now_us)
    query = in_range(select(accounts.c.id, accounts.c.unseen).where(due), accounts.c.id, id_range)
    with engine.connect() as conn:
        return {row.id: int(row.unseen) for row in conn.execute(query)}


def written(engine: Engine, id_range: IdRange = None) -> dict[str, int]:
    """Accounts (of `id_range`) written since last seen: id -> `unseen` as read."""
    written_since = select(accounts.c.id, accounts.c.unseen).where(accounts.c.unseen > 0)
    query = in_range(written_since, accounts.c.id, id_range)
    with engine.connect() as conn:
        return {row.id: int(row.unseen) for row in conn.execute(query)}


def settle(engine: Engine, marks: Sequence[Mark]) -> None:
    """An evaluation saw these accounts: store each one's next due time, and clear `unseen` where no
    write came since it was read."""
    statement = (update(accounts).where(accounts.c.id == bindparam("b_id"))
                 .values(due_us=bindparam("b_due"),
                         unseen=case((accounts.c.unseen == bindparam("b_seen"), 0), else_=accounts.c.unseen)))
    for batch in chunked(marks, 1000):
        with transaction(engine) as conn:
            conn.execute(statement, [{"b_id": i, "b_seen": seen, "b_due": due} for i, seen, due in batch])


def due_no_later(engine: Engine, dues: dict[str, int]) -> None:
    """Bring the due time of these accounts forward to the given moments (a re-entry cooldown's end)."""
    statement = (update(accounts).where(accounts.c.id == bindparam("b_id"))
                 .values(due_us=case((or_(accounts.c.due_us.is_(None), accounts.c.due_us > bindparam("b_due")),
                                      bindparam("b_due")), else_=accounts.c.due_us)))
    for batch in chunked(sorted(dues.items()), 1000):
        with transaction(engine) as conn:
            conn.execute(statement, [{"b_id": i, "b_due": due} for i, due in batch])
