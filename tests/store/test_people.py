"""Contacts read for conditions: only the fields named, as the whole record has them."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.engine import Engine

from playbookd.model import fields as F
from playbookd.store.database import transaction
from playbookd.store.people import WELL_KNOWN, contact_types, contacts_by_account
from playbookd.store.schema import contacts, fields

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _populate(engine: Engine) -> None:
    def row(account: str, email: str, position: int, role: str | None, data: dict[str, object]) -> dict[str, object]:
        return {"account_id": account, "email": email, "role": role, "position": position, "data": data,
                "status": "active", "is_primary": position == 0, "synced_at": NOW}

    with transaction(engine) as conn:
        conn.execute(fields.insert(), [{"entity": "contacts", "name": "since", "type": F.DATE},
                                       {"entity": "contacts", "name": "seats", "type": F.INTEGER}])
        conn.execute(contacts.insert(), [
            row("A1", "b@acme.example", 1, "admin", {"since": "2025-01-31", "seats": 3, "role": "shadowed"}),
            row("A1", "a@acme.example", 0, None, {"since": None, "note": "x"}),
            row("A3", "c@acme.example", 0, "user", {})])


def test_a_read_of_some_contact_fields_gives_them_as_the_whole_record_has_them(engine: Engine) -> None:
    _populate(engine)
    with engine.connect() as conn:
        types = contact_types(conn)
        whole = contacts_by_account(conn, ["A1", "A2", "A3"], types)
        assert [p["email"] for p in whole["A1"]] == ["a@acme.example", "b@acme.example"] and whole["A2"] == []
        assert whole["A1"][1]["since"] == date(2025, 1, 31) and whole["A1"][1]["role"] == "admin"
        for names in ([], ["role"], ["since", "role"], ["seats", "nowhere"], ["account_id"], [*WELL_KNOWN, "note"]):
            some = contacts_by_account(conn, ["A1", "A2", "A3"], types, names)
            assert some == {a: [{k: v for k, v in p.items() if k in names} for p in people]
                            for a, people in whole.items()}, names
