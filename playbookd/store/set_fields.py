"""The `set` step: write playbook-chosen values into an account's fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from playbookd.model import fields as F
from playbookd.model.account import encode
from playbookd.store.database import insert_ignore
from playbookd.store.schema import accounts
from playbookd.store.schema import fields as fields_table


def value_type(value: Any) -> str:
    if isinstance(value, str):
        return F.infer(value)[0]
    for kind in (F.BOOLEAN, F.INTEGER, F.DECIMAL, F.DATETIME, F.DATE):
        try:
            if F.coerce(value, kind) == value:
                return kind
        except ValueError:
            continue
    return F.STRING


def set_fields(conn: Connection, account_id: str, values: dict[str, Any], now: datetime) -> None:
    row = conn.execute(select(accounts.c.data).where(accounts.c.id == account_id)).first()
    if row is None:
        return
    data = dict(row.data)
    data.update({k: encode(v) for k, v in values.items()})
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(data=data, synced_at=now))
    known = set(F.ACCOUNT_FIELDS) | set(F.DERIVED_FIELDS)
    insert_ignore(conn, fields_table, [{"entity": "accounts", "name": k, "type": value_type(v)}
                                       for k, v in values.items() if k not in known])
