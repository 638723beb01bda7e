"""Sync: type and check each source's rows, upsert them in chunks, remember previous values.

Every chunk of about a thousand rows is one transaction: one SELECT of what exists, diffs in
Python, executemany writes. A bad row is reported and skipped whole; the others are applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ARRAY, Connection, Engine, String, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from playbookd import audit as A
from playbookd import fields as F
from playbookd.conditions import Condition, FieldTypes, leaves, parse_condition_data
from playbookd.db import insert_ignore, utcnow
from playbookd.errors import Problem, UserError, ValidationError
from playbookd.logic import evaluate
from playbookd.records import AccountRecord, account_types, decode_account, encode
from playbookd.schema import accounts, contacts, events, fields, state
from playbookd.settings import Config, Source
from playbookd.sources import Row, SourceError, read_rows, source_columns, source_file

CHUNK = 1000
DEFAULT_SEGMENT = "default"
ENTITIES = ("accounts", "contacts", "events")
LEFT, ACTIVE = "left", "active"
LEFT_ROLES = {"champion": "champion_left_at", "admin": "admin_left_at"}
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
Item = tuple[int, str, dict[str, Any]]  # line, key, values
# what a record is made of; timestamps stay unread (parsing them costs on SQLite)
_RECORD = (accounts.c.id, accounts.c.segment, accounts.c.data, accounts.c.changes)


@dataclass
class SourceReport:
    source: str
    entity: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"read": self.read, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged, "problems": len(self.problems)}


@dataclass
class SyncReport:
    sources: list[SourceReport]

    @property
    def ok(self) -> bool:
        return not any(s.problems for s in self.sources)

    def summary_lines(self) -> list[str]:
        lines = []
        for s in self.sources:
            lines.append(f"{s.source} ({s.entity}): read {s.read}, inserted {s.inserted}, "
                         f"updated {s.updated}, unchanged {s.unchanged}, {len(s.problems)} problem(s)")
            lines += [f"  {p}" for p in s.problems]
        return lines


# --- typing -------------------------------------------------------------------------------

def _infer(raw: Any) -> tuple[str | None, Any]:
    """Type of one inferred value: JSON scalars keep their kind, text is inferred like CSV."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    if isinstance(raw, bool):
        return F.BOOLEAN, raw
    if isinstance(raw, int):
        return F.INTEGER, raw
    if isinstance(raw, float):
        return F.DECIMAL, raw
    if isinstance(raw, str):
        return F.infer(raw)
    raise ValueError(f"expected a single value, got {type(raw).__name__}")


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if value is None or isinstance(value, str) else str(encode(value))


class Typer:
    """Fixed types for well-known and declared fields; inference, widened across rows, for the rest."""

    def __init__(self, fixed: Mapping[str, str], known: Mapping[str, str]) -> None:
        self.fixed = fixed
        self.types = dict(known)  # inferred column types, starting from the store's
        self.dirty: set[str] = set()  # types to write to the `fields` table
        self.to_text: set[str] = set()  # columns that became text: stored values need restating

    def row(self, values: Mapping[str, Any], skip: Container[str]) -> tuple[dict[str, Any], list[str]]:
        typed: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        errors: list[str] = []
        for name, raw in values.items():
            if name in skip:
                continue
            kind = self.fixed.get(name)
            try:
                if kind is not None:
                    typed[name] = _fixed(raw, kind)
                    continue
                inferred, typed[name] = self._inferred(raw, self.types.get(name))
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
                continue
            if inferred is not None:
                kinds[name] = inferred
        if kinds and not errors:
            self._widen(typed, kinds, values)
        return typed, errors

    @staticmethod
    def _inferred(raw: Any, known: str | None) -> tuple[str | None, Any]:
        if raw.__class__ is str:
            if known == F.STRING:
                # a text column stays text whatever comes: skip parsing (the hot path)
                return (F.STRING, raw) if raw and not raw.isspace() else (None, None)
            if raw.isdigit() and (raw[0] != "0" or len(raw) == 1):
                return F.INTEGER, int(raw)
        return _infer(raw)

    def _widen(self, typed: dict[str, Any], kinds: dict[str, str], raw: Mapping[str, Any]) -> None:
        for name, kind in kinds.items():
            old = self.types.get(name)
            if old == kind:
                continue
            new = F.widen(old, kind)
            if new != old:
                self.types[name] = new
                self.dirty.add(name)
                if new == F.STRING and old is not None:
                    self.to_text.add(name)
            if new == F.STRING and kind != F.STRING:
                typed[name] = _text(raw[name])


def _fixed(raw: Any, kind: str) -> Any:
    """F.coerce, with shortcuts for the plainest text (same results, a third of the time)."""
    if raw.__class__ is str:
        if kind == F.STRING:
            return raw if raw and not raw.isspace() else None
        if kind in F.NUMERIC and raw.isdecimal():
            return int(raw)
        if kind == F.DECIMAL and raw.count(".") == 1 and raw.replace(".", "").isdecimal():
            return float(raw)
    return F.coerce(raw, kind)


def _encoded(typed: Mapping[str, Any]) -> dict[str, Any]:
    return {name: encode(value) if isinstance(value, date) else value for name, value in typed.items()}


def _same(a: Any, b: Any) -> bool:
    if type(a) is type(b):
        return bool(a == b)
    # True == 1 in Python; a flag turning into a count is a change
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _merge(data: Mapping[str, Any], changes: Mapping[str, Any], supplied: Mapping[str, Any],
           at: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """New data and changes for the fields `supplied`; fields not supplied are kept."""
    new_data, new_changes, changed = dict(data), dict(changes), False
    for name, value in supplied.items():
        old = new_data.get(name)
        if _same(old, value):
            new_changes.pop(name, None)
        else:
            new_changes[name] = {"from": old, "at": at}
            changed = True
        if value is None:
            new_data.pop(name, None)
        else:
            new_data[name] = value
    return new_data, new_changes, changed


# --- segments -----------------------------------------------------------------------------

class Segmenter:
    """config.segments in order, first match wins; config validation requires a catch-all, so
    'default' (when nothing matches) only shows up for configs that skipped validation."""

    def __init__(self, config: Config, types: Mapping[str, str | None], now: datetime) -> None:
        known = FieldTypes(dict(types))
        self.rules: list[tuple[str, Condition | None]] = []
        for segment in config.segments:
            self.rules.append((segment.name, self._parse(config, segment.name, segment.when, known)))
        self.now, self.tz = now, config.tz
        self.names = {leaf.field for _, cond in self.rules if cond is not None for leaf in leaves(cond)}

    @staticmethod
    def _parse(config: Config, name: str, when: Any, known: FieldTypes) -> Condition | None:
        if when is None:
            return None
        cond, problems = parse_condition_data(when, str(config.path), known)
        if problems:
            raise ValidationError(problems, f"{config.path}: segment {name}: bad condition")
        return cond

    @property
    def constant(self) -> str | None:
        """The segment every account gets when the first segment has no condition."""
        return self.rules[0][0] if self.rules and self.rules[0][1] is None else None

    def __call__(self, record: AccountRecord) -> str:
        for name, cond in self.rules:
            if cond is None or evaluate(cond, record, self.now, self.tz):
                return name
        return DEFAULT_SEGMENT

    def of(self, account_id: str, data: Mapping[str, Any], changes: Mapping[str, Any],
           types: Mapping[str, str]) -> str:
        if self.constant is not None:
            return self.constant
        # only the fields the conditions name: decoding whole records costs more than evaluating
        names = self.names
        return self(decode_account(account_id, "", {n: data[n] for n in names if n in data},
                                   {n: changes[n] for n in names if n in changes}, types))


def _custom_types(conn: Connection) -> dict[str, str]:
    rows = conn.execute(select(fields.c.name, fields.c.type).where(fields.c.entity == "accounts"))
    return {name: kind for name, kind in rows}


def load_account_types(conn: Connection) -> dict[str, str]:
    return account_types(_custom_types(conn))


def assign_segments(engine: Engine, config: Config, account_ids: Iterable[str] | None = None) -> int:
    """(Re)assign the segment of the given accounts (all when None); returns how many changed."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    segmenter = Segmenter(config, types, utcnow())
    records = iter_accounts(engine, types) if account_ids is None else _records(engine, account_ids, types)
    changed = 0
    for batch in _batches(records):
        moves = [{"b_id": r["id"], "b_segment": s} for r in batch if (s := segmenter(r)) != r["segment"]]
        if moves:
            with engine.begin() as conn:
                conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id"))
                             .values(segment=bindparam("b_segment")), moves)
        changed += len(moves)
    return changed


def _batches(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _records(engine: Engine, ids: Iterable[str], types: Mapping[str, str]) -> Iterator[AccountRecord]:
    for batch in _batches(ids):
        with engine.connect() as conn:
            query = select(*_RECORD).where(accounts.c.id.in_(batch)).order_by(accounts.c.id)
            rows = conn.execute(query).all()
        for row in rows:
            yield decode_account(row.id, row.segment, row.data, row.changes, types)


# --- reading accounts ---------------------------------------------------------------------

def iter_accounts(engine: Engine, types: Mapping[str, str], batch_size: int = 1000,
                  id_range: tuple[str | None, str | None] | None = None) -> Iterator[AccountRecord]:
    """Accounts ordered by id, `batch_size` at a time (keyset); id_range is [low, high)."""
    low, high = id_range or (None, None)
    last: str | None = None
    while True:
        query = select(*_RECORD).order_by(accounts.c.id).limit(batch_size)
        if last is not None:
            query = query.where(accounts.c.id > last)
        elif low is not None:
            query = query.where(accounts.c.id >= low)
        if high is not None:
            query = query.where(accounts.c.id < high)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield decode_account(row.id, row.segment, row.data, row.changes, types)
        if len(rows) < batch_size:
            return
        last = rows[-1].id


def get_account(conn: Connection, account_id: str, types: Mapping[str, str]) -> AccountRecord | None:
    row = conn.execute(select(*_RECORD).where(accounts.c.id == account_id)).first()
    return None if row is None else decode_account(row.id, row.segment, row.data, row.changes, types)


def _among(conn: Connection, column: Any, values: list[str]) -> Any:
    """column IN values; one array parameter on PostgreSQL, where a thousand bound values plan slowly."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("among", values, type_=ARRAY(String)))
    return column.in_(values)


def _upsert(conn: Connection, table: Any, keys: list[str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table)
    others = [c for c in rows[0] if c not in keys]
    conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                            set_={c: stmt.excluded[c] for c in others}), rows)


# --- the runs -----------------------------------------------------------------------------

class _Run:
    """One source's sync: subclasses turn rows into items and write chunks of them."""

    def __init__(self, engine: Engine, config: Config, source: Source, report: SourceReport,
                 now: datetime) -> None:
        self.engine, self.config, self.source, self.report, self.now = engine, config, source, report, now
        self.file = source_file(source)
        self.at = now.isoformat()
        self.seen: dict[str, int] = {}

    def problem(self, line: int | None, message: str) -> None:
        self.report.problems.append(Problem(self.file, line, None, message))

    def run(self) -> None:
        batch: list[Item] = []
        for row in read_rows(self.source):
            self.report.read += 1
            if row.error is not None:
                self.problem(row.line, row.error)
            elif (item := self.item(row)) is not None:
                batch.append(item)
            if len(batch) >= CHUNK:
                self.flush(batch)
                batch = []
        if batch:
            self.flush(batch)
        self.finish()

    def first(self, key: str, line: int, what: str) -> bool:
        """False (and a problem) when `key` already came earlier in this file."""
        if key in self.seen:
            self.problem(line, f"{what}: duplicate (first on line {self.seen[key]})")
            return False
        self.seen[key] = line
        return True

    def known_accounts(self, conn: Connection, batch: list[Item]) -> dict[str, Any]:
        ids = {values["account_id"] for _, _, values in batch}
        rows = conn.execute(select(*_RECORD).where(accounts.c.id.in_(ids)))
        return {row.id: row for row in rows}

    def item(self, row: Row) -> Item | None:
        raise NotImplementedError

    def flush(self, batch: list[Item]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last chunk."""


_NOT_SUPPLIED = frozenset({"id", *F.DERIVED_FIELDS})


class _Accounts(_Run):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        with self.engine.connect() as conn:
            self.stored = _custom_types(conn)
        declared = {n: k for n, k in self.source.types.items() if n not in F.ACCOUNT_FIELDS}
        self.typer = Typer({**declared, **F.ACCOUNT_FIELDS}, self.stored)
        self.typer.types.update(declared)
        self.typer.dirty.update(n for n, k in declared.items() if self.stored.get(n) != k)
        self.columns: set[str] = set()
        self.segmenter: Segmenter | None = None
        self.ignored: set[str] = set()

    def item(self, row: Row) -> Item | None:
        values = row.values
        try:
            account_id = _fixed(values.get("id"), F.STRING)
        except ValueError as exc:
            self.problem(row.line, f"account: id: {exc}")
            return None
        if account_id is None:
            self.problem(row.line, "account without an id")
            return None
        account_id = account_id.strip()
        if not self.first(account_id, row.line, f"account {account_id}: id"):
            return None
        self._note_derived(values)
        typed, errors = self.typer.row(values, _NOT_SUPPLIED)
        if errors:
            self.problem(row.line, f"account {account_id}: " + "; ".join(errors))
            return None
        self.columns.update(typed)
        return row.line, account_id, _encoded(typed)

    def _note_derived(self, values: Mapping[str, Any]) -> None:
        for name in F.DERIVED_FIELDS:
            if name in values and name not in self.ignored:
                self.ignored.add(name)
                self.problem(None, f"column {name!r} is maintained by playbookd; rename it in the source")

    def types(self) -> dict[str, str]:
        return account_types(self.typer.types)

    def flush(self, batch: list[Item]) -> None:
        if self.segmenter is None:
            guess: dict[str, str | None] = dict.fromkeys(self.columns)
            self.segmenter = Segmenter(self.config, {**guess, **self.types()}, self.now)
        types = self.types()
        with self.engine.begin() as conn:
            ids = [key for _, key, _ in batch]
            query = select(*_RECORD).where(_among(conn, accounts.c.id, ids))
            existing = {r.id: r for r in conn.execute(query)}
            inserts, updates, touched = self._diff(batch, existing, types)
            self._write(conn, inserts, updates, touched)

    def _diff(self, batch: list[Item], existing: Mapping[str, Any],
              types: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
        assert self.segmenter is not None
        inserts, updates, touched = [], [], []
        for _, account_id, supplied in batch:
            old = existing.get(account_id)
            if old is None:
                # no contact has been synced for a brand-new account yet
                data = {"contacts_active": 0, **{k: v for k, v in supplied.items() if v is not None}}
                segment = self.segmenter.of(account_id, data, {}, types)
                inserts.append({"id": account_id, "segment": segment, "data": data, "changes": {},
                                })
                continue
            data, changes, changed = _merge(old.data, old.changes, supplied, self.at)
            segment = self.segmenter.of(account_id, data, changes, types)
            self.report.updated += changed
            self.report.unchanged += not changed
            if changed or changes != old.changes or segment != old.segment:
                updates.append({"b_id": account_id, "data": data, "changes": changes, "segment": segment})
            else:
                touched.append(account_id)
        self.report.inserted += len(inserts)
        return inserts, updates, touched

    def _write(self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]],
               touched: list[str]) -> None:
        if inserts:
            conn.execute(accounts.insert().values(synced_at=self.now, created_at=self.now), inserts)
        if updates:
            conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id")).values(
                data=bindparam("data"), changes=bindparam("changes"), segment=bindparam("segment"),
                synced_at=self.now), updates)
        if touched:
            stmt = update(accounts).where(_among(conn, accounts.c.id, touched))
            conn.execute(stmt.values(synced_at=self.now))
        self._write_types(conn)

    def _write_types(self, conn: Connection) -> None:
        types = self.typer.types
        rows = [{"entity": "accounts", "name": n, "type": types[n]} for n in sorted(self.typer.dirty)]
        _upsert(conn, fields, ["entity", "name"], rows)
        self.typer.dirty.clear()

    def finish(self) -> None:
        with self.engine.begin() as conn:
            self._write_types(conn)
        if self.typer.to_text:
            _restate_as_text(self.engine, self.typer.to_text)


def _restate_as_text(engine: Engine, names: set[str]) -> None:
    """A column that widened to text keeps text values, or `eq: "1"` would miss a stored 1."""
    last = ""
    while True:
        with engine.begin() as conn:
            rows = conn.execute(select(accounts.c.id, accounts.c.data).where(accounts.c.id > last)
                                .order_by(accounts.c.id).limit(CHUNK)).all()
            fixes = [{"b_id": r.id, "data": {k: _text(v) if k in names else v for k, v in r.data.items()}}
                     for r in rows if any(not isinstance(r.data.get(n), str | None) for n in names)]
            if fixes:
                conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id"))
                             .values(data=bindparam("data")), fixes)
        if len(rows) < CHUNK:
            return
        last = rows[-1].id


class _Contacts(_Run):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = Typer(F.CONTACT_FIELDS, {})
        self.position = 0
        self.original: dict[str, Any] = {}  # contacts_active before this run, per account
        with self.engine.connect() as conn:
            self.types = load_account_types(conn)
        self.segmenter = Segmenter(self.config, self.types, self.now)

    def item(self, row: Row) -> Item | None:
        email = (_text(row.values.get("email")) or "").strip().lower()
        if not _EMAIL.match(email):
            self.problem(row.line, f"contact {email!r}: not a valid email address" if email
                         else "contact without an email")
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
        return row.line, email, {**base, "email": email, "data": _encoded(extra), "position": self.position}

    @staticmethod
    def _check(typed: dict[str, Any]) -> list[str]:
        """Normalise in place; roles and statuses compare lowercase everywhere."""
        for name in ("account_id", "first_name", "last_name", "role", "status", "timezone"):
            if isinstance(typed.get(name), str):
                typed[name] = typed[name].strip() or None
        for name in ("role", "status"):
            typed[name] = typed[name].lower() if typed.get(name) else typed.get(name)
        errors = [] if typed.get("account_id") else ["account_id is missing"]
        zone = typed.get("timezone")
        try:
            if zone:
                ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"timezone: unknown time zone {zone!r}")
        return errors

    def flush(self, batch: list[Item]) -> None:
        with self.engine.begin() as conn:
            known = self.known_accounts(conn, batch)
            good = [it for it in batch if self._known(it, known)]
            rows = conn.execute(select(contacts).where(contacts.c.account_id.in_(list(known))))
            existing = {(r.account_id, r.email): r for r in rows}
            inserts, updates, left = self._diff(good, existing)
            if inserts:
                conn.execute(contacts.insert(), inserts)
            if updates:
                conn.execute(update(contacts).where(contacts.c.id == bindparam("b_id")).values(
                    {c: bindparam(c) for c in _CONTACT_UPDATE}), updates)
            self._derive(conn, known, left)

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
            changed = any(not _same(getattr(old, c), new[c]) for c in _CONTACT_UPDATE if c != "synced_at")
            self.report.updated += changed
            self.report.unchanged += not changed
            updates.append({**new, "b_id": old.id})
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
            if _same(original, data["contacts_active"]):
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
                data=bindparam("data"), changes=bindparam("changes"), segment=bindparam("segment")), updates)


_CONTACT_UPDATE = ("first_name", "last_name", "role", "timezone", "status", "is_primary", "position",
                   "data", "synced_at")


class _Events(_Run):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.typer = Typer(F.EVENT_FIELDS, {})

    def item(self, row: Row) -> Item | None:
        typed, errors = self.typer.row(row.values, ("id",))
        account_id, name = typed.pop("account_id", None), typed.pop("name", None)
        label = f"event {name or '?'} of account {account_id or '?'}"
        if not (account_id and name):
            errors.insert(0, "needs account_id and name")
        if errors:
            self.problem(row.line, f"{label}: " + "; ".join(errors))
            return None
        occurred = typed.pop("occurred_at", None) or self.now
        values = {"account_id": account_id, "name": name, "data": _encoded(typed),
                  "occurred_at": occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)}
        return row.line, self._key(row.values), values

    def _key(self, values: Mapping[str, Any]) -> str:
        given = _text(values.get("id"))
        if given is not None and given.strip() and len(given) < 200:
            return f"{self.source.name}:{given.strip()}"
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.source.name}:#{digest[:40]}"

    def flush(self, batch: list[Item]) -> None:
        with self.engine.begin() as conn:
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


RUNS: dict[str, type[_Run]] = {"accounts": _Accounts, "contacts": _Contacts, "events": _Events}


def _chosen(config: Config, only: Sequence[str] | None) -> list[Source]:
    names = [s.name for s in config.sources]
    unknown = [n for n in only or () if n not in names]
    if unknown:
        raise UserError(f"unknown source {', '.join(map(repr, unknown))}; "
                        f"sources are: {', '.join(names) or '(none configured)'}")
    picked = [s for s in config.sources if only is None or s.name in only]
    return sorted(picked, key=lambda s: ENTITIES.index(s.entity))  # stable: config order kept


def _check_segments(engine: Engine, config: Config, now: datetime) -> None:
    """Refuse a bad segment condition before any row is written."""
    names: dict[str, str | None] = {}
    for source in config.sources:
        if source.entity == "accounts":
            try:
                names.update(dict.fromkeys(source_columns(source)))
            except SourceError:
                continue  # reported by the source's own run
    with engine.connect() as conn:
        Segmenter(config, {**names, **load_account_types(conn)}, now)


def _record(engine: Engine, report: SourceReport, now: datetime) -> None:
    counts = report.counts()
    with engine.begin() as conn:
        _upsert(conn, state, ["key"], [{"key": f"sync:{report.source}", "updated_at": now,
                                        "value": {**counts, "at": now.isoformat()}}])
        A.record(conn, A.SYNCED, reason=report.source, at=now,
                 detail={"source": report.source, "entity": report.entity, **counts})


def sync(engine: Engine, config: Config, only: Sequence[str] | None = None,
         now: datetime | None = None) -> SyncReport:
    """Sync the sources (accounts, then contacts, then events); bad rows end up in the report."""
    now = now or utcnow()
    chosen = _chosen(config, only)
    _check_segments(engine, config, now)
    reports = []
    for source in chosen:
        report = SourceReport(source.name, source.entity)
        try:
            RUNS[source.entity](engine, config, source, report, now).run()
        except SourceError as exc:
            report.problems.append(Problem(exc.file, exc.line, None, exc.reason))
        report.problems.sort(key=lambda p: (p.file, p.line or 0))  # file order, whatever found them
        _record(engine, report, now)
        reports.append(report)
    return SyncReport(reports)
