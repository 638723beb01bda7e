"""What one source's sync reports, and the loop every entity's run shares.

A source is read whole before anything from it is written: its items wait in a spool (chunks
past the first in a temporary file, so memory stays one chunk). A source that fails mid-read (a
file changed under us, a database gone, an API page that errors) applies nothing.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol

from sqlalchemy import Connection, Engine, select

from playbookd.config.settings import Config, Source
from playbookd.errors import Problem
from playbookd.model import fields as F
from playbookd.sources.base import Row, source_file
from playbookd.sources.registry import read_rows
from playbookd.store.accounts import RECORD, among
from playbookd.store.chunks import CHUNK
from playbookd.store.schema import accounts

Item = tuple[int, str, dict[str, Any], str | None]  # line, key, values, digest of the source row


@dataclass
class SourceReport:
    source: str
    entity: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    failure: str | None = None  # why the source could not be read at all (nothing from it was applied)
    unreachable: bool = False  # ...because it was down or changing: worth retrying soon
    attempts: int = 0  # syncs in a row, this one included, that could not read the source
    retry_at: datetime | None = None  # when the daemon tries a failed source again

    def counts(self) -> dict[str, int]:
        return {"read": self.read, "inserted": self.inserted, "updated": self.updated,
                "unchanged": self.unchanged, "problems": len(self.problems)}


@dataclass
class SyncReport:
    sources: list[SourceReport]
    health: str | None = None  # what recomputing health scores did, when they are configured

    @property
    def ok(self) -> bool:
        return not any(s.problems for s in self.sources)

    @property
    def unreachable(self) -> list[str]:
        """Sources that could not be read for now (down, or changing while read)."""
        return [s.source for s in self.sources if s.unreachable]

    @property
    def unreadable(self) -> list[str]:
        """Sources that could not be read for a reason of their own (a missing file, a bad query)."""
        return [s.source for s in self.sources if s.failure is not None and not s.unreachable]

    def summary_lines(self) -> list[str]:
        lines = []
        for s in self.sources:
            lines.append(f"{s.source} ({s.entity}): read {s.read}, inserted {s.inserted}, "
                         f"updated {s.updated}, unchanged {s.unchanged}, {len(s.problems)} problem(s)")
            lines += [f"  {p}" for p in s.problems]
        return lines + ([self.health] if self.health else [])


class Scorer(Protocol):
    """Health scored in a write a sync makes anyway (sync.scores.Inline)."""

    def prepare(self) -> None:
        """Before a run that scores: the account sources have been synced, their types are final."""

    def __call__(self, conn: Connection, rows: list[dict[str, Any]], first: set[str],
                 types: dict[str, str]) -> bool:
        """Put health into each row's `data` and `changes` (rows of id, segment, data, changes)
        before they are written; `first`: the ids whose score is no change (new this sync). False
        when it scores nothing (no health configured)."""


class Touched:
    """The accounts a sync wrote, whose health may have moved; `everything` when a change reached
    accounts no row named (a widened type, restated values) or when they are too many to list.
    `scored`: the accounts whose health went into a write of this sync with their last inputs of
    it (`scorer`), which need no rescoring after it; `lost` when they were too many to list."""

    LIMIT = 200_000

    def __init__(self, scorer: Scorer | None = None) -> None:
        self.ids: set[str] = set()
        self.everything = False
        self.scorer = scorer
        self.scored: set[str] = set()
        self.lost = False
        # contacts_active before this sync, per account: a second contacts source's change is from it
        self.contacts_active: dict[str, Any] = {}

    def score(self, conn: Connection, rows: list[dict[str, Any]], first: set[str], types: dict[str, str]) -> None:
        if self.scorer is None or not rows or not self.scorer(conn, rows, first, types):
            return
        if not self.lost:
            self.scored.update(row["id"] for row in rows)
            if len(self.scored) > self.LIMIT:  # rescored after the sync instead: the same score, no write
                self.lost = True
                self.scored.clear()

    def add(self, ids: Iterable[str]) -> None:
        if not self.everything:
            self.ids.update(ids)
            if len(self.ids) > self.LIMIT:
                self.all()

    def all(self) -> None:
        self.everything = True
        self.ids.clear()


class Run:
    """One source's sync: subclasses turn rows into items and write chunks of them. Rows are
    taken a chunk at a time so `prefetch` can read their stored digests in one query: a row whose
    digest is stored is counted unchanged and goes no further (sync.digests)."""

    NAMED_BY = ("account", "id")  # how a problem names an unreadable row: what, and the value that says which

    def __init__(self, engine: Engine, config: Config, source: Source, report: SourceReport,
                 now: datetime, touched: Touched | None = None) -> None:
        self.engine, self.config, self.source, self.report, self.now = engine, config, source, report, now
        self.touched = touched or Touched()
        self.file = source_file(source)
        self.at = now.isoformat()
        self.seen: dict[str, int] = {}
        self.skipped = 0  # rows recognised unchanged by their digest

    def problem(self, line: int | None, message: str) -> None:
        if self.source.path is None and line is not None:
            # a query's or an API's record has a number, not a line in a file
            self.report.problems.append(Problem(self.file, None, None, f"row {line}: {message}"))
            return
        self.report.problems.append(Problem(self.file, line, None, message))

    def run(self) -> None:
        with tempfile.TemporaryFile(prefix="playbookd-sync-") as file:
            spool = _Spool(file)
            rows: list[Row] = []
            for row in read_rows(self.source, self.config.limits.max_field_bytes):
                self.report.read += 1
                rows.append(row)
                if len(rows) >= CHUNK:
                    self._take(rows, spool)
                    rows = []
            self._take(rows, spool)
            self.report.unchanged += self.skipped  # read whole: now apply
            for batch in spool.chunks():
                self.flush(batch)
        self.finish()

    def _take(self, rows: list[Row], spool: _Spool) -> None:
        good = [row for row in rows if row.error is None]
        if good:
            self.prefetch(good)
        for row in rows:
            if row.error is not None:
                self.problem(row.line, label(row.values, *self.NAMED_BY) + row.error)
            elif (item := self.item(row)) is not None:
                spool.add(item)

    def prefetch(self, rows: list[Row]) -> None:
        """Read what `item` needs from the store for these rows (their stored digests)."""

    def first(self, key: str, line: int, what: str) -> bool:
        """False (and a problem) when `key` already came earlier in this file."""
        if key in self.seen:
            self.problem(line, f"{what}: duplicate (first on line {self.seen[key]})")
            return False
        self.seen[key] = line
        return True

    def known_accounts(self, conn: Connection, batch: list[Item]) -> dict[str, Any]:
        ids = sorted({values["account_id"] for _, _, values, _ in batch})
        rows = conn.execute(select(*RECORD, accounts.c.created_at).where(among(conn, accounts.c.id, ids)))
        return {row.id: row for row in rows}

    def item(self, row: Row) -> Item | None:
        raise NotImplementedError

    def flush(self, batch: list[Item]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last chunk."""




def label(values: dict[str, Any], what: str, key: str) -> str:
    """What a problem with an unreadable row says first when the row has its key ("account A1: ")."""
    value = values.get(key)
    if isinstance(value, str | int) and str(value).strip():
        return f"{what} {str(value).strip()[:200]}: "
    return ""


class _Spool:
    """Items kept until the source has been read whole: the last chunk in memory, the ones before
    it in `file` (a temporary file of our own)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.batch: list[Item] = []

    def add(self, item: Item) -> None:
        self.batch.append(item)
        if len(self.batch) >= CHUNK:
            pickle.dump(self.batch, self.file, pickle.HIGHEST_PROTOCOL)
            self.batch = []

    def chunks(self) -> Iterator[list[Item]]:
        end = self.file.tell()
        self.file.seek(0)
        while self.file.tell() < end:
            yield pickle.load(self.file)
        if self.batch:
            yield self.batch


def lookup_ids(rows: list[Row], key: str) -> list[str]:
    """The ids of `rows` fit to be looked up: a bad one (a NUL, which PostgreSQL refuses in any query,
    a control character, too long) is reported later by `item` with its line, never queried."""
    found = {value.strip() for row in rows if isinstance(value := row.values.get(key), str)}
    return sorted(i for i in found if i and F.id_problem(i) is None)
