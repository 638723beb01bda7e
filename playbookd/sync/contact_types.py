"""The types of contacts' extra columns, kept in the `fields` table as account columns' are, so
conditions, recipient filters and templates read `contact.<name>` typed (dates as dates)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, Engine

from playbookd.model import fields as F
from playbookd.store.database import upsert
from playbookd.store.people import custom_contact_types
from playbookd.store.schema import fields
from playbookd.sync.columns import Typer

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
