"""Syncing contacts (and the account fields they derive) and events."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, func, literal, select

from playbookd.config.zones import zone
from playbookd.model import fields as F
from playbookd.model.account import encode, same
from playbookd.model.addresses import AddressError, canonical
from playbookd.sources.base import Row
from playbookd.store.accounts import among, load_account_types
from playbookd.store.bulk import insert_rows, update_rows
from playbookd.store.chunks import CHUNK, chunked
from playbookd.store.database import aware, insert_ignore, transaction
from playbookd.store.marks import UNSEEN, touch
from playbookd.store.schema import accounts, contacts, events
from playbookd.sync import digests
from playbookd.sync.base import Item, Run, lookup_ids
from playbookd.sync.columns import Typer, as_text, encoded, restate_as_text
from playbookd.sync.contact_types import contact_typer, write_contact_types
from playbookd.sync.segments import Segmenter

LEFT, ACTIVE = "left", "active"
LEFT_ROLES = {"champion": "champion_left_at", "admin": "admin_left_at"}
# the contact's own columns: PostgreSQL refuses a NUL in text and a value over the column's length, and
# one such row would fail its whole batch, so each is a problem of its row
_BOUNDED: dict[str, int | None] = {name: getattr(contacts.c[name].type, "length", None)
                                   for name in ("first_name", "last_name", "role", "timezone", "status")}
_BOUNDED_ITEMS = tuple(_BOUNDED.items())
_STRIPPED = ("account_id", "first_name", "last_name", "role", "status", "timezone")


def _unstorable(name: str, value: str, limit: int | None) -> str:
    """Why a value of one of the contact's own columns cannot be stored (it holds a NUL or is too long)."""
    if "\x00" in value:
        return f"{name}: contains a NUL character"
    return f"{name}: {len(value)} characters, more than the {limit} a contact's {name} may have"


class ContactRun(Run):
    NAMED_BY = ("contact", "email")
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = contact_typer(self.engine, self.source.types)
        self.position = 0
        self.original = self.touched.contacts_active  # before this sync, whichever contacts source wrote since
        with self.engine.connect() as conn:
            self.types = load_account_types(conn)
        self.segmenter = Segmenter(self.config, self.types, self.now)
        self.skipping = digests.skipping(self.config)
        self.context = digests.context("contacts", self.source.name, self.source.fields, self.source.types,
                                       self.config.timezone)
        self.digests: dict[str, tuple[str, str]] = {}  # stored digest -> its contact's account and email
        self.quiet: set[str] = set()  # accounts with contacts recognised unchanged
        if self.touched.scorer is not None:
            self.touched.scorer.prepare()
        # the chunk (of the spool's CHUNK items, sync.base) holding each account's last contact, and
        # the one being flushed: an account's health is scored with its count in that chunk alone,
        # never with the part count of one whose contacts span two (a move that never was)
        self.last_chunk: dict[str, int] = {}
        self.items, self.chunk = 0, -1

    def prefetch(self, rows: list[Row]) -> None:
        if not self.skipping:
            return
        ids = lookup_ids(rows, "account_id")
        with self.engine.connect() as conn:
            query = (select(contacts.c.source_digest, contacts.c.account_id, contacts.c.email)
                     .join(accounts, accounts.c.id == contacts.c.account_id)
                     .where(among(conn, contacts.c.account_id, ids), contacts.c.source_digest.is_not(None)))
            self.digests = {d: (a, e) for d, a, e in conn.execute(query)}

    def item(self, row: Row) -> Item | None:
        # the position it gets if good is part of its digest: a contact that moved is rewritten
        digest = digests.digest(self.context, row.values, self.position + 1)
        if self.skipping and digest in self.digests:
            self._unchanged(row.line, *self.digests[digest])
            return None
        email = self._address(row)
        if email is None:
            return None
        typed, errors = self.typer.row(row.values, ("email",), dated=True)
        errors += self._check(typed, errors)
        if errors:
            self.problem(row.line, f"contact {email}: " + "; ".join(errors))
            return None
        if not self.first(f"{typed['account_id']}\n{email}", row.line,
                          f"contact {email} of account {typed['account_id']}"):
            return None
        self.position += 1
        self.last_chunk[typed["account_id"]] = self.items // CHUNK
        self.items += 1
        values = {k: v for k, v in typed.items() if k in F.CONTACT_FIELDS}
        extra = {k: v for k, v in typed.items() if k not in F.CONTACT_FIELDS} if len(values) < len(typed) else {}
        values.update(email=email, data=extra, position=self.position)  # most sources have no extra column
        return row.line, email, values, digest

    def _unchanged(self, line: int, account_id: str, email: str) -> None:
        """A row as last synced: only checked for a duplicate, and counted."""
        if self.first(f"{account_id}\n{email}", line, f"contact {email} of account {account_id}"):
            self.position += 1
            self.skipped += 1
            self.quiet.add(account_id)

    def _address(self, row: Row) -> str | None:
        """The contact's address in its one canonical form (see model/addresses), or a row problem."""
        raw = as_text(row.values.get("email")) or ""
        if not raw.strip():
            self.problem(row.line, "contact without an email")
            return None
        if why := F.text_problem(raw):
            self.problem(row.line, f"contact {raw[:100]!r}: not a deliverable address: {why}")
            return None
        try:
            return canonical(raw)
        except AddressError as exc:
            shown = raw if len(raw) <= 100 else raw[:100] + "…"
            self.problem(row.line, f"contact {shown!r}: not a deliverable address: {exc}")
            return None

    @staticmethod
    def _check(typed: dict[str, Any], found: list[str]) -> list[str]:
        """Normalise in place; roles and statuses compare lowercase everywhere. `found`: what typing
        reported (an account_id it refused is not also missing)."""
        for name in _STRIPPED:
            if isinstance(value := typed.get(name), str):
                typed[name] = value.strip() or None
        for name in ("role", "status"):
            typed[name] = value.lower() if (value := typed.get(name)) else value
        account_id = typed.get("account_id")
        refused = bool(found) and any(e.startswith("account_id:") for e in found)
        errors = [] if account_id or refused else ["account_id is missing"]
        if account_id and (why := F.id_problem(account_id)):
            errors.append(f"account_id {why}")
        for name, limit in _BOUNDED_ITEMS:  # the plain test inline: most values pass it
            value = typed.get(name)
            if isinstance(value, str) and ("\x00" in value or (limit is not None and len(value) > limit)):
                errors.append(_unstorable(name, value, limit))
        given = typed.get("timezone")
        if given and zone(given) is None and not any(e.startswith("timezone:") for e in errors):
            errors.append(f"timezone: unknown time zone {given!r}")
        return errors

    def flush(self, batch: list[Item]) -> None:
        self.chunk += 1
        with transaction(self.engine) as conn:
            known = self.known_accounts(conn, batch)
            good = [it for it in batch if self._known(it, known)]
            query = select(contacts).where(among(conn, contacts.c.account_id, list(known))).order_by(contacts.c.id)
            if conn.dialect.name == "postgresql":  # as AccountRun.flush: a bounce meanwhile is not overwritten
                query = query.with_for_update()
            rows = conn.execute(query)
            existing = {(r.account_id, r.email): r for r in rows}
            inserts, updates, digested, left = self._diff(good, existing)
            insert_rows(conn, contacts, inserts, synced_at=self.now)
            update_rows(conn, contacts, "id", updates, synced_at=self.now)
            update_rows(conn, contacts, "id", digested)
            owner = {r.id: r.account_id for r in existing.values()}
            derived = self._derive(conn, known, left)
            # a contacts condition reads them: their account is evaluated again (one `_derive` wrote is already)
            touch(conn, ({row["account_id"] for row in inserts} | {owner[row["id"]] for row in updates}) - derived)
            write_contact_types(conn, self.typer)

    def finish(self) -> None:
        with transaction(self.engine) as conn:
            write_contact_types(conn, self.typer)
        if self.typer.to_text:
            restate_as_text(self.engine, contacts, self.typer.to_text)
        self._settle(self.quiet - self.original.keys())

    def _settle(self, ids: set[str]) -> None:
        """Accounts whose every contact was unchanged: their count is as stored, so a pending
        contacts_active change from an earlier sync goes, as `_derive` would drop it."""
        for batch in chunked(sorted(ids)):
            with transaction(self.engine) as conn:
                rows = conn.execute(select(accounts.c.id, accounts.c.changes).where(
                    among(conn, accounts.c.id, batch), _has_key(conn, accounts.c.changes, "contacts_active")))
                settled = [{"id": r.id, "changes": {k: v for k, v in r.changes.items() if k != "contacts_active"}}
                           for r in rows if "contacts_active" in (r.changes or {})]
                update_rows(conn, accounts, "id", settled, increment=UNSEEN)  # `changes` moved

    def _known(self, item: Item, known: Mapping[str, Any]) -> bool:
        line, email, values, _ = item
        if values["account_id"] in known:
            return True
        self.problem(line, f"contact {email}: unknown account {values['account_id']}")
        return False

    def _diff(self, batch: list[Item], existing: Mapping[tuple[str, str], Any]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, set[str]]]:
        inserts, updates, digested, left = [], [], [], defaultdict(set)
        for _, email, values, digest in batch:
            old = existing.get((values["account_id"], email))
            new = self._merged(values, old)
            if old is None:
                inserts.append({**new, "account_id": values["account_id"], "email": email, "source_digest": digest})
                continue
            new["id"] = old.id
            changed = any(not same(getattr(old, c), new[c]) for c in _CONTACT_UPDATE)
            self.report.updated += changed
            self.report.unchanged += not changed
            if changed:  # an unchanged contact is not rewritten (see AccountRun._diff)
                updates.append({**new, "source_digest": digest})
            elif old.source_digest != digest:
                digested.append({"id": old.id, "source_digest": digest})
            if old.status != LEFT and new["status"] == LEFT and new["role"] in LEFT_ROLES:
                left[values["account_id"]].add(LEFT_ROLES[new["role"]])
        self.report.inserted += len(inserts)
        return inserts, updates, digested, left

    def _merged(self, values: Mapping[str, Any], old: Any) -> dict[str, Any]:
        """Supplied columns win; the rest keep their stored value (or default for new contacts)."""
        if old is None:  # a new contact (every one of a first sync): nothing stored to keep
            row = {c: values.get(c) for c in _CONTACT_UPDATE}
            data = values["data"]
        else:
            row = {c: values[c] if c in values else getattr(old, c, None) for c in _CONTACT_UPDATE}
            data = {**old.data, **values["data"]}
        row["status"] = row["status"] or ACTIVE
        row["is_primary"] = bool(row["is_primary"])
        row["data"] = {k: v for k, v in data.items() if v is not None}
        return row

    def _derive(self, conn: Connection, known: Mapping[str, Any], left: Mapping[str, set[str]]) -> set[str]:
        """contacts_active and champion/admin departures, tracked in `changes` like any field (an
        account new in this sync has no history: its first count is no change, as its fields are
        not, sync.accounts), and health with them (Touched.score). Returns the accounts written."""
        counts: dict[str, int] = dict(conn.execute(
            select(contacts.c.account_id, func.count()).where(
                among(conn, contacts.c.account_id, list(known)), contacts.c.status == ACTIVE,
            ).group_by(contacts.c.account_id)).all())
        updates: list[dict[str, Any]] = []
        new = {account_id for account_id, row in known.items() if aware(row.created_at) == self.now}
        for account_id, row in known.items():
            data, changes = dict(row.data), dict(row.changes)
            original = self.original.setdefault(account_id, data.get("contacts_active"))
            data["contacts_active"] = counts.get(account_id, 0)
            if account_id in new or same(original, data["contacts_active"]):
                changes.pop("contacts_active", None)
            else:
                changes["contacts_active"] = {"from": original, "at": self.at}
            for name in sorted(left.get(account_id, ())):
                changes[name] = {"from": data.get(name), "at": self.at}
                data[name] = encode(self.now)
            segment = self.segmenter.of(account_id, data, changes, self.types)
            if (data, changes, segment) != (row.data, row.changes, row.segment):
                updates.append({"id": account_id, "data": data, "changes": changes, "segment": segment})
        last = [u for u in updates if self.last_chunk.get(u["id"]) == self.chunk]
        self.touched.score(conn, last, new, self.types)
        update_rows(conn, accounts, "id", updates, increment=UNSEEN)
        self.touched.add(u["id"] for u in updates)
        return {u["id"] for u in updates}


def _has_key(conn: Connection, column: Any, key: str) -> Any:
    """The JSON object in `column` has `key` (most have none: only those rows are read)."""
    if conn.dialect.name == "postgresql":
        return column.op("->")(literal(key)).is_not(None)
    return func.json_type(column, f"$.{key}").is_not(None)


_CONTACT_UPDATE = ("first_name", "last_name", "role", "timezone", "status", "is_primary", "position", "data")


class EventRun(Run):
    NAMED_BY = ("event of account", "account_id")
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = Typer(F.EVENT_FIELDS, {})

    def item(self, row: Row) -> Item | None:
        typed, errors = self.typer.row(row.values, ("id",))
        account_id, name = typed.pop("account_id", None), typed.pop("name", None)
        label = f"event {name or '?'} of account {account_id or '?'}"
        refused = {e.partition(":")[0] for e in errors}  # a value typing refused is not also missing
        if any(not value and key not in refused for key, value in (("account_id", account_id), ("name", name))):
            errors.insert(0, "needs account_id and name")
        elif account_id and (why := F.id_problem(account_id)):  # None: typing refused it (in `errors`)
            errors.insert(0, f"account_id {why}")
        given = as_text(row.values.get("id"))
        if isinstance(given, str) and (why := F.text_problem(given)):  # it would be the event's dedupe_key
            errors.append(f"id {why}")
        if errors:
            self.problem(row.line, f"{label}: " + "; ".join(errors))
            return None
        occurred = typed.pop("occurred_at", None) or self.now
        values = {"account_id": account_id, "name": name, "data": encoded(typed),
                  "occurred_at": occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)}
        return row.line, self._key(row.values), values, None

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
            for line, key, values, _ in batch:
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


