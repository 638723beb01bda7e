"""Contacts as typed records: the well-known columns and every synced extra column, typed like
account fields, for `contacts:` conditions, recipient filters and `contact.<name>` in templates."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from playbookd.model import fields as F
from playbookd.model.account import CONTACTS, decode
from playbookd.store.chunks import chunked
from playbookd.store.schema import contacts, fields

WELL_KNOWN = ("email", "first_name", "last_name", "role", "timezone", "status", "is_primary")


def custom_contact_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "contacts"))
    return {name: kind for name, kind in rows}


def contact_types(conn: Connection) -> dict[str, str]:
    """Types of every contact field: synced extra columns, well-known ones win."""
    return {**custom_contact_types(conn), **F.CONTACT_FIELDS}


def contact_record(row: Any, types: Mapping[str, str]) -> dict[str, Any]:
    """A contact row as a typed dict: its extra columns, then the well-known ones (which win)."""
    return typed_contact(row.data, {name: getattr(row, name) for name in WELL_KNOWN}, types)


def typed_contact(data: Mapping[str, Any] | None, known: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """contact_record from a row's `data` and its well-known columns (`known`, by name)."""
    record = _extra(data, types, None)
    record.update(known)
    return record


def contacts_by_account(conn: Connection, account_ids: Iterable[str], types: Mapping[str, str],
                        names: Collection[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each account's contacts as typed records, in source order; [] for an account without any.
    With `names`, each record holds only those fields (all a condition reads): the extra columns'
    JSON is not even read when none of them is named."""
    ids = list(dict.fromkeys(account_ids))
    found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    known = WELL_KNOWN if names is None else tuple(n for n in WELL_KNOWN if n in names)
    extra = names is None or any(n not in F.CONTACT_FIELDS for n in names)
    columns = [contacts.c.account_id, *(contacts.c[n] for n in known), *([contacts.c.data] if extra else [])]
    wanted = None if names is None else set(names)
    for batch in chunked(ids, 500):
        query = (select(*columns).where(contacts.c.account_id.in_(batch))
                 .order_by(contacts.c.account_id, contacts.c.position, contacts.c.id))
        for row in conn.execute(query).all():  # by position: a named attribute per column cost more
            record = _extra(row[-1], types, wanted) if extra else {}
            record.update(zip(known, row[1:1 + len(known)], strict=True))
            found[row[0]].append(record)
    return found


def _extra(data: Mapping[str, Any] | None, types: Mapping[str, str], wanted: set[str] | None) -> dict[str, Any]:
    """The synced extra columns of a contact, typed (those of `wanted` only, when given)."""
    return {name: decode(value, types.get(name)) for name, value in (data or {}).items()
            if value is not None and name not in F.CONTACT_FIELDS and (wanted is None or name in wanted)}


def attach_contacts(conn: Connection, records: Sequence[MutableMapping[str, Any]],
                    types: Mapping[str, str] | None = None, names: Collection[str] | None = None) -> None:
    """Give each account record its contacts (under CONTACTS), one query per 500 accounts; with
    `names`, only those fields of each contact."""
    if not records:
        return
    types = contact_types(conn) if types is None else types
    people = contacts_by_account(conn, (str(r["id"]) for r in records), types, names)
    for record in records:
        record[CONTACTS] = people.get(str(record["id"]), [])
