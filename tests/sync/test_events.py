"""Recording events (what `playbookd event` and POST /events share), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.errors import ConflictError, UserError
from playbookd.store.database import utcnow
from playbookd.store.schema import accounts, events
from playbookd.sync.events import record


@pytest.fixture
def known(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(accounts.insert(), [{"id": i, "segment": "s", "data": {}, "changes": {}, "synced_at": utcnow(),
                                          "created_at": utcnow()} for i in ("ACC-1", "ACC-2")])
    return engine


def stored(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [(r.account_id, r.dedupe_key) for r in conn.execute(select(events).order_by(events.c.id))]


def test_an_id_names_one_event_of_one_account(known: Engine) -> None:
    event = {"account": "ACC-1", "name": "nps_response", "id": "typeform-981"}
    assert record(known, [event]).added == 1
    assert record(known, [event]).duplicates == 1  # a retry
    with pytest.raises(ConflictError, match="event 2: id 'typeform-981' is already used by an event of another"):
        record(known, [{"account": "ACC-2", "name": "x", "id": "new"}, {**event, "account": "ACC-2"}])
    assert stored(known) == [("ACC-1", "typeform-981")]  # the batch's other event went with it


def test_one_id_for_two_accounts_in_one_batch_is_a_conflict(known: Engine) -> None:
    batch = [{"account": "ACC-1", "name": "x", "id": "zap-1"}, {"account": "ACC-2", "name": "x", "id": "zap-1"}]
    with pytest.raises(ConflictError, match="event 2: id 'zap-1'"):
        record(known, batch)
    assert stored(known) == []


@pytest.mark.parametrize(("data", "message"), [
    ({"score": float("nan")}, "`data.score` is NaN"),
    ({"a": {"b": [float("-inf")]}}, "`data.a.b[0]` is -Infinity"),
    ({"note": "x\x00"}, "`data.note` contains a NUL character"),
    ({"\udcff": 1}, "`data` has a key that contains an unpaired surrogate"),
])
def test_values_postgresql_cannot_store_are_refused_with_their_place(known: Engine, data: dict[str, object],
                                                                     message: str) -> None:
    with pytest.raises(UserError, match="^event 1: " + re.escape(message)):
        record(known, [{"account": "ACC-1", "name": "x", "data": data}])
    assert stored(known) == []
