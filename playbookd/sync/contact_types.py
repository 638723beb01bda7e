"""The types of contacts' extra columns, kept in the `fields` table as account columns' are, so
conditions, recipient filters and templates read `contact.<name>` typed (dates as dates)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, Engine, bindparam, select, update

from playbookd.model import fields as F
from playbookd.store.chunks import CHUNK
from playbookd.store.database import transaction, upsert
from playbookd.store.people import custom_contact_types
from playbookd.store.schema import contacts, fields
from playbookd.sync.columns import Typer, as_text

ENTITY = "contacts"


def contact_typer(engine: Engine, declared: Mapping[str, str]) -> Typer:
    """Well-known columns fixed; a source's `types:` fixed too; the rest inferred from the store's."""
    with engine.connect() as conn:
        stored = custom_contact_types(conn)
    own = {name: kind for name, kind in declared.items() if name not in F.CONTACT_FIELDS}
    typer = Typer({**own, **F.CONTACT_FIELDS}, stored)
    typer.types.update(own)
    typer.dirty.update(name for name, kind in own.items() if stored.get(name) != kind)
    return typer


def write_contact_types(conn: Connection, typer: Typer) -> None:
    rows = [{"entity": ENTITY, "name": name, "type": typer.types[name]} for name in sorted(typer.dirty)]
    upsert(conn, fields, ["entity", "name"], rows)
    typer.dirty.clear()


def restate_contacts_as_text(engine: Engine, names: set[str]) -> None:
    """A column that widened to text keeps text values in every contact, as accounts' do."""
    last = 0
    while True:
        with transaction(engine) as conn:
            rows = conn.execute(select(contacts.c.id, contacts.c.data).where(contacts.c.id > last)
                                .order_by(contacts.c.id).limit(CHUNK)).all()
            fixes = [{"b_id": r.id, "data": {k: as_text(v) if k in names else v for k, v in r.data.items()}}
                     for r in rows if any(not isinstance(r.data.get(n), str | None) for n in names)]
            if fixes:
                conn.execute(update(contacts).where(contacts.c.id == bindparam("b_id"))
                             .values(data=bindparam("data")), fixes)
        if len(rows) < CHUNK:
            return
        last = rows[-1].id
