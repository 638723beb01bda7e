"""Syncing accounts: typed, diffed against the store, segment assigned, previous values kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, select

from playbookd.config.reserved import reserved_field
from playbookd.model import fields as F
from playbookd.model.account import account_types
from playbookd.sources.base import Row
from playbookd.store.accounts import RECORD, among, custom_types
from playbookd.store.bulk import insert_rows, update_rows, upsert_rows
from playbookd.store.database import aware, transaction, upsert
from playbookd.store.marks import UNSEEN
from playbookd.store.schema import account_digests, accounts, fields
from playbookd.sync import digests
from playbookd.sync.base import Item, Run, lookup_ids
from playbookd.sync.columns import Typer, fixed_value, merge, restate_as_text
from playbookd.sync.segments import Segmenter, assign_segments

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
        self.retyped = False  # a column's type was written: values of rows no one touched read differently
        self.skipping = digests.skipping(self.config)
        self.context = digests.context("accounts", self.source.name, self.source.fields, declared,
                                       self.config.custom_fields, digests.segments_context(self.config))
        self.digests: dict[str, str | None] = {}
        # the first accounts source's digests are on the account; a later one's (a billing export over
        # the CRM's ids) are kept apart, or each source's sync would find the other's there
        first = next(s for s in self.config.sources if s.entity == "accounts")
        self.apart = first.name != self.source.name

    def prefetch(self, rows: list[Row]) -> None:
        if not self.skipping:
            return
        with self.engine.connect() as conn:
            self.digests = self._held(conn, lookup_ids(rows, "id"))

    def _held(self, conn: Connection, ids: list[str]) -> dict[str, str | None]:
        """The digests this source last stored for these accounts."""
        if self.apart:
            query = select(account_digests.c.account_id, account_digests.c.digest).where(
                account_digests.c.source == self.source.name, among(conn, account_digests.c.account_id, ids))
        else:
            query = select(accounts.c.id, accounts.c.source_digest).where(among(conn, accounts.c.id, ids))
        return dict(conn.execute(query).all())

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
        digest = digests.digest(self.context, values)
        if self.skipping and self.digests.get(account_id) == digest:
            self.skipped += 1
            return None
        typed, errors = self.typer.row(values, self.skip, dated=True)
        if errors:
            self.problem(row.line, f"account {account_id}: " + "; ".join(errors))
            return None
        self.columns.update(typed)
        return row.line, account_id, typed, digest

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
            ids = [key for _, key, _, _ in batch]
            query = select(*RECORD, accounts.c.created_at, accounts.c.source_digest).where(
                among(conn, accounts.c.id, ids)).order_by(accounts.c.id)
            if conn.dialect.name == "postgresql":  # a `set` step or a bounce committing meanwhile must not be
                query = query.with_for_update()    # overwritten, nor its cleared digest stamped over
            existing = {r.id: r for r in conn.execute(query)}
            held = self._held(conn, ids) if self.apart else {k: r.source_digest for k, r in existing.items()}
            inserts, updates, digested = self._diff(batch, existing, held, types)
            self._write(conn, inserts, updates, digested)
        self.touched.add(row["id"] for row in inserts)
        self.touched.add(row["id"] for row in updates)

    def _diff(self, batch: list[Item], existing: Mapping[str, Any], held: Mapping[str, str | None],
              types: Mapping[str, str]) -> tuple[list[dict[str, Any]], ...]:
        """Rows whose data, changes and segment are as stored are not written, but for a new digest
        (`digested`): most rows of a sync are unchanged, and rewriting them was most of its cost
        (`synced_at` is when a sync last changed the row)."""
        assert self.segmenter is not None
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        digested: list[dict[str, Any]] = []
        for _, account_id, supplied, digest in batch:
            old = existing.get(account_id)
            if old is None:
                # no contact has been synced for a brand-new account yet
                data = {"contacts_active": 0, **{k: v for k, v in supplied.items() if v is not None}}
                segment = self.segmenter.of(account_id, data, {}, types)
                inserts.append({"id": account_id, "segment": segment, "data": data, "changes": {},
                                "source_digest": digest})
                continue
            # an account that a source before this one created in this same sync has no history yet
            first_sync = aware(old.created_at) == self.now
            data, changes, changed = merge(old.data, old.changes, supplied, None if first_sync else self.at)
            segment = self.segmenter.of(account_id, data, changes, types)
            self.report.updated += changed
            self.report.unchanged += not changed
            if changed or changes != old.changes or segment != old.segment:
                updates.append({"id": account_id, "data": data, "changes": changes, "segment": segment,
                                "source_digest": digest})
            elif held.get(account_id) != digest:
                digested.append({"id": account_id, "source_digest": digest})
                if held.get(account_id) is None:  # a playbook or a bounce wrote it since: health may move
                    self.touched.add((account_id,))
        self.report.inserted += len(inserts)
        return inserts, updates, digested

    def _write(self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]],
               digested: list[dict[str, Any]]) -> None:
        if self.apart:
            kept = [{"source": self.source.name, "account_id": row["id"], "digest": row.pop("source_digest")}
                    for row in [*inserts, *updates, *digested]]
            upsert_rows(conn, account_digests, ["source", "account_id"], kept)
            for row in inserts:
                row["source_digest"] = None  # the first accounts source's, when it gives the account
            digested = []
        if updates:  # a field both give is the later source's: it compares these accounts in full again
            conn.execute(delete(account_digests).where(account_digests.c.source != self.source.name,
                                                       among(conn, account_digests.c.account_id,
                                                             [row["id"] for row in updates])))
        insert_rows(conn, accounts, inserts, synced_at=self.now, created_at=self.now)
        update_rows(conn, accounts, "id", updates, increment=UNSEEN, synced_at=self.now)
        update_rows(conn, accounts, "id", digested)
        self._write_types(conn)

    def _write_types(self, conn: Connection) -> None:
        types = self.typer.types
        rows = [{"entity": "accounts", "name": n, "type": types[n]} for n in sorted(self.typer.dirty)]
        if rows:
            self.retyped = True
        upsert(conn, fields, ["entity", "name"], rows)
        self.typer.dirty.clear()

    def finish(self) -> None:
        with transaction(self.engine) as conn:
            self._write_types(conn)
        if self.typer.to_text:
            restate_as_text(self.engine, accounts, self.typer.to_text)
        if self.retyped:
            # rows skipped as unchanged were segmented under the old types, and health reads them too
            self.touched.all()
            if self.skipped:
                assign_segments(self.engine, self.config)


