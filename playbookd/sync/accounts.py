"""Syncing accounts: typed, diffed against the store, segment assigned, previous values kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from playbookd.config.reserved import reserved_field
from playbookd.model import fields as F
from playbookd.model.account import account_types
from playbookd.sources.base import Row
from playbookd.store.accounts import RECORD, among, custom_types
from playbookd.store.database import aware, transaction, upsert
from playbookd.store.marks import bump
from playbookd.store.schema import accounts, fields
from playbookd.sync.base import Item, Run
from playbookd.sync.columns import Typer, encoded, fixed_value, merge, restate_as_text
from playbookd.sync.segments import Segmenter

_NOT_SUPPLIED = frozenset({"id", *F.DERIVED_FIELDS})


class AccountRun(Run):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        with self.engine.connect() as conn:
            self.stored = custom_types(conn)
        declared = {n: k for n, k in {**self.config.custom_fields, **self.source.types}.items()
                    if n not in F.ACCOUNT_FIELDS}
        self.typer = Typer({**declared, **F.ACCOUNT_FIELDS}, self.stored)
        self.typer.types.update(declared)
        self.typer.dirty.update(n for n, k in declared.items() if self.stored.get(n) != k)
        self.columns: set[str] = set()
        self.segmenter: Segmenter | None = None
        self.ignored: set[str] = set()
        self.skip: set[str] = set(_NOT_SUPPLIED)
        self.columns_seen: set[str] = set()

    def item(self, row: Row) -> Item | None:
        values = row.values
        try:
            account_id = fixed_value(values.get("id"), F.STRING)
        except ValueError as exc:
            self.problem(row.line, f"account: id: {exc}")
            return None
        if account_id is None:
            self.problem(row.line, "account without an id")
            return None
        account_id = account_id.strip()
        if why := F.id_problem(account_id):
            self.problem(row.line, f"account {account_id!r}: id {why}")
            return None
        if not self.first(account_id, row.line, f"account {account_id}: id"):
            return None
        self._note_derived(values)
        if not self.columns_seen.issuperset(values):
            self._note_reserved(values)
        typed, errors = self.typer.row(values, self.skip)
        if errors:
            self.problem(row.line, f"account {account_id}: " + "; ".join(errors))
            return None
        self.columns.update(typed)
        return row.line, account_id, encoded(typed)

    def _note_derived(self, values: Mapping[str, Any]) -> None:
        for name in F.DERIVED_FIELDS:
            if name in values and name not in self.ignored:
                self.ignored.add(name)
                self.problem(None, f"column {name!r} is maintained by playbookd; rename it in the source")

    def _note_reserved(self, values: Mapping[str, Any]) -> None:
        """A column with a reserved name (health_score, contacts ...) is reported once and not synced."""
        for name in values:
            if name not in self.columns_seen and (why := reserved_field(name)):
                self.skip.add(name)
                self.problem(None, f"column {why}; rename it in the source (its values are not synced)")
        self.columns_seen.update(values)

    def types(self) -> dict[str, str]:
        return account_types(self.typer.types)

    def flush(self, batch: list[Item]) -> None:
        if self.segmenter is None:
            guess: dict[str, str | None] = dict.fromkeys(self.columns)
            self.segmenter = Segmenter(self.config, {**guess, **self.types()}, self.now)
        types = self.types()
        with transaction(self.engine) as conn:
            ids = [key for _, key, _ in batch]
            query = select(*RECORD, accounts.c.created_at).where(among(conn, accounts.c.id, ids))
            existing = {r.id: r for r in conn.execute(query)}
            inserts, updates = self._diff(batch, existing, types)
            self._write(conn, inserts, updates)

    def _diff(self, batch: list[Item], existing: Mapping[str, Any],
              types: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows whose data, changes and segment are as stored are not written at all: most rows of a
        sync are unchanged, and rewriting them was most of its cost (`synced_at` is when a sync last
        changed the row)."""
        assert self.segmenter is not None
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for _, account_id, supplied in batch:
            old = existing.get(account_id)
            if old is None:
                # no contact has been synced for a brand-new account yet
                data = {"contacts_active": 0, **{k: v for k, v in supplied.items() if v is not None}}
                segment = self.segmenter.of(account_id, data, {}, types)
                inserts.append({"id": account_id, "segment": segment, "data": data, "changes": {},
                                })
                continue
            # an account that a source before this one created in this same sync has no history yet
            first_sync = aware(old.created_at) == self.now
            data, changes, changed = merge(old.data, old.changes, supplied, None if first_sync else self.at)
            segment = self.segmenter.of(account_id, data, changes, types)
            self.report.updated += changed
            self.report.unchanged += not changed
            if changed or changes != old.changes or segment != old.segment:
                updates.append({"b_id": account_id, "data": data, "changes": changes, "segment": segment})
        self.report.inserted += len(inserts)
        return inserts, updates

    def _write(self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        if inserts:
            conn.execute(accounts.insert().values(synced_at=self.now, created_at=self.now), inserts)
        if updates:
            conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id")).values(
                data=bindparam("data"), changes=bindparam("changes"), segment=bindparam("segment"),
                synced_at=self.now, unseen=bump()), updates)
        self._write_types(conn)

    def _write_types(self, conn: Connection) -> None:
        types = self.typer.types
        rows = [{"entity": "accounts", "name": n, "type": types[n]} for n in sorted(self.typer.dirty)]
        upsert(conn, fields, ["entity", "name"], rows)
        self.typer.dirty.clear()

    def finish(self) -> None:
        with transaction(self.engine) as conn:
            self._write_types(conn)
        if self.typer.to_text:
            restate_as_text(self.engine, accounts, self.typer.to_text)


