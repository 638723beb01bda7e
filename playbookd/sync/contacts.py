"""Syncing contacts (and the account fields they derive) and events."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from playbookd.config.zones import zone
from playbookd.model import fields as F
from playbookd.model.account import encode, same
from playbookd.model.addresses import AddressError, canonical
from playbookd.sources.base import Row
from playbookd.store.accounts import load_account_types
from playbookd.store.database import insert_ignore, transaction
from playbookd.store.marks import bump, touch
from playbookd.store.schema import accounts, contacts, events
from playbookd.sync.base import Item, Run
from playbookd.sync.columns import Typer, as_text, encoded, restate_as_text
from playbookd.sync.contact_types import contact_typer, write_contact_types
from playbookd.sync.segments import Segmenter

LEFT, ACTIVE = "left", "active"
LEFT_ROLES = {"champion": "champion_left_at", "admin": "admin_left_at"}


class ContactRun(Run):
    NAMED_BY = ("contact", "email")
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = contact_typer(self.engine, self.source.types)
        self.position = 0
        self.original: dict[str, Any] = {}  # contacts_active before this run, per account
        with self.engine.connect() as conn:
            self.types = load_account_types(conn)
        self.segmenter = Segmenter(self.config, self.types, self.now)

    def item(self, row: Row) -> Item | None:
        email = self._address(row)
        if email is None:
            return None
        typed, errors = self.typer.row(row.values, ("email",))
        errors += self._check(typed)
        if errors:
            self.problem(row.line, f"contact {email}: " + "; ".join(errors))
            return None
        if not self.first(f"{typed['account_id']}\n{email}", row.line,
                          f"contact {email} of account {typed['account_id']}"):
            return None
        self.position += 1
        extra = {k: v for k, v in typed.items() if k not in F.CONTACT_FIELDS}
        base = {k: v for k, v in typed.items() if k in F.CONTACT_FIELDS}
        return row.line, email, {**base, "email": email, "data": encoded(extra), "position": self.position}

    def _address(self, row: Row) -> str | None:
        """The contact's address in its one canonical form (see model/addresses), or a row problem."""
        raw = as_text(row.values.get("email")) or ""
        if not raw.strip():
            self.problem(row.line, "contact without an email")
            return None
        try:
            return canonical(raw)
        except AddressError as exc:
            shown = raw if len(raw) <= 100 else raw[:100] + "…"
            self.problem(row.line, f"contact {shown!r}: not a deliverable address: {exc}")
            return None

    @staticmethod
    def _check(typed: dict[str, Any]) -> list[str]:
        """Normalise in place; roles and statuses compare lowercase everywhere."""
        for name in ("account_id", "first_name", "last_name", "role", "status", "timezone"):
            if isinstance(typed.get(name), str):
                typed[name] = typed[name].strip() or None
        for name in ("role", "status"):
            typed[name] = typed[name].lower() if typed.get(name) else typed.get(name)
        errors = [] if typed.get("account_id") else ["account_id is missing"]
        if typed.get("account_id") and (why := F.id_problem(typed["account_id"])):
            errors.append(f"account_id {why}")
        given = typed.get("timezone")
        if given and zone(given) is None:
            errors.append(f"timezone: unknown time zone {given!r}")
        return errors

    def flush(self, batch: list[Item]) -> None:
        with transaction(self.engine) as conn:
            known = self.known_accounts(conn, batch)
            good = [it for it in batch if self._known(it, known)]
            rows = conn.execute(select(contacts).where(contacts.c.account_id.in_(list(known))))
            existing = {(r.account_id, r.email): r for r in rows}
            inserts, updates, left = self._diff(good, existing)
            touched = {row["account_id"] for row in inserts} | {row.pop("account_id") for row in updates}
            if inserts:
                conn.execute(contacts.insert(), inserts)
            if updates:
                conn.execute(update(contacts).where(contacts.c.id == bindparam("b_id")).values(
                    {c: bindparam(c) for c in _CONTACT_UPDATE}), updates)
            touch(conn, touched)  # a contacts condition reads them: their account is evaluated again
            self._derive(conn, known, left)
            write_contact_types(conn, self.typer)

    def finish(self) -> None:
        with transaction(self.engine) as conn:
            write_contact_types(conn, self.typer)
        if self.typer.to_text:
            restate_as_text(self.engine, contacts, self.typer.to_text)

    def _known(self, item: Item, known: Mapping[str, Any]) -> bool:
        line, email, values = item
        if values["account_id"] in known:
            return True
        self.problem(line, f"contact {email}: unknown account {values['account_id']}")
        return False

    def _diff(self, batch: list[Item], existing: Mapping[tuple[str, str], Any]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, set[str]]]:
        inserts, updates, left = [], [], defaultdict(set)
        for _, email, values in batch:
            old = existing.get((values["account_id"], email))
            new = self._merged(values, old)
            if old is None:
                inserts.append({**new, "account_id": values["account_id"], "email": email})
                continue
            changed = any(not same(getattr(old, c), new[c]) for c in _CONTACT_UPDATE if c != "synced_at")
            self.report.updated += changed
            self.report.unchanged += not changed
            if changed:  # an unchanged contact is not rewritten (see AccountRun._diff)
                updates.append({**new, "b_id": old.id, "account_id": values["account_id"]})
            if old.status != LEFT and new["status"] == LEFT and new["role"] in LEFT_ROLES:
                left[values["account_id"]].add(LEFT_ROLES[new["role"]])
        self.report.inserted += len(inserts)
        return inserts, updates, left

    def _merged(self, values: Mapping[str, Any], old: Any) -> dict[str, Any]:
        """Supplied columns win; the rest keep their stored value (or default for new contacts)."""
        row = {c: values[c] if c in values else getattr(old, c, None) for c in _CONTACT_UPDATE}
        row["status"] = row["status"] or ACTIVE
        row["is_primary"] = bool(row["is_primary"])
        data = {**(old.data if old is not None else {}), **values["data"]}
        row.update(data={k: v for k, v in data.items() if v is not None}, synced_at=self.now)
        return row

    def _derive(self, conn: Connection, known: Mapping[str, Any], left: Mapping[str, set[str]]) -> None:
        """contacts_active and champion/admin departures, tracked in `changes` like any field."""
        counts: dict[str, int] = dict(conn.execute(
            select(contacts.c.account_id, func.count()).where(
                contacts.c.account_id.in_(list(known)), contacts.c.status == ACTIVE,
            ).group_by(contacts.c.account_id)).all())
        updates = []
        for account_id, row in known.items():
            data, changes = dict(row.data), dict(row.changes)
            original = self.original.setdefault(account_id, data.get("contacts_active"))
            data["contacts_active"] = counts.get(account_id, 0)
            if same(original, data["contacts_active"]):
                changes.pop("contacts_active", None)
            else:
                changes["contacts_active"] = {"from": original, "at": self.at}
            for name in sorted(left.get(account_id, ())):
                changes[name] = {"from": data.get(name), "at": self.at}
                data[name] = encode(self.now)
            segment = self.segmenter.of(account_id, data, changes, self.types)
            if (data, changes, segment) != (row.data, row.changes, row.segment):
                updates.append({"b_id": account_id, "data": data, "changes": changes, "segment": segment})
        if updates:
            conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id")).values(
                data=bindparam("data"), changes=bindparam("changes"), segment=bindparam("segment"),
                unseen=bump()), updates)


_CONTACT_UPDATE = ("first_name", "last_name", "role", "timezone", "status", "is_primary", "position",
                   "data", "synced_at")


class EventRun(Run):
    NAMED_BY = ("event of account", "account_id")
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = Typer(F.EVENT_FIELDS, {})

    def item(self, row: Row) -> Item | None:
        typed, errors = self.typer.row(row.values, ("id",))
        account_id, name = typed.pop("account_id", None), typed.pop("name", None)
        label = f"event {name or '?'} of account {account_id or '?'}"
        if not (account_id and name):
            errors.insert(0, "needs account_id and name")
        elif why := F.id_problem(account_id):
            errors.insert(0, f"account_id {why}")
        if errors:
            self.problem(row.line, f"{label}: " + "; ".join(errors))
            return None
        occurred = typed.pop("occurred_at", None) or self.now
        values = {"account_id": account_id, "name": name, "data": encoded(typed),
                  "occurred_at": occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)}
        return row.line, self._key(row.values), values

    def _key(self, values: Mapping[str, Any]) -> str:
        given = as_text(values.get("id"))
        if given is not None and given.strip() and len(given) < 200:
            return f"{self.source.name}:{given.strip()}"
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.source.name}:#{digest[:40]}"

    def flush(self, batch: list[Item]) -> None:
        with transaction(self.engine) as conn:
            known = self.known_accounts(conn, batch)
            fresh: dict[str, dict[str, Any]] = {}
            for line, key, values in batch:
                if values["account_id"] not in known:
                    self.problem(line, f"event {values['name']}: unknown account {values['account_id']}")
                    continue
                self.report.unchanged += key in fresh
                fresh.setdefault(key, values)
            stored = set(conn.execute(select(events.c.dedupe_key).where(
                events.c.dedupe_key.in_(list(fresh)))).scalars())
            new = [{**v, "dedupe_key": k, "received_at": self.now}
                   for k, v in fresh.items() if k not in stored]
            insert_ignore(conn, events, new)
        self.report.inserted += len(new)
        self.report.unchanged += len(fresh) - len(new)


