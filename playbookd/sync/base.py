"""What one source's sync reports, and the loop every entity's run shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from playbookd.config.settings import Config, Source
from playbookd.errors import Problem
from playbookd.sources.base import Row, source_file
from playbookd.sources.registry import read_rows
from playbookd.store.accounts import RECORD
from playbookd.store.chunks import CHUNK
from playbookd.store.schema import accounts

Item = tuple[int, str, dict[str, Any]]  # line, key, values


@dataclass
class SourceReport:
    source: str
    entity: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    unreachable: bool = False  # the system behind the source could not be reached: retried next time

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
        return [s.source for s in self.sources if s.unreachable]

    def summary_lines(self) -> list[str]:
        lines = []
        for s in self.sources:
            lines.append(f"{s.source} ({s.entity}): read {s.read}, inserted {s.inserted}, "
                         f"updated {s.updated}, unchanged {s.unchanged}, {len(s.problems)} problem(s)")
            lines += [f"  {p}" for p in s.problems]
        return lines + ([self.health] if self.health else [])


class Run:
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
        rows = conn.execute(select(*RECORD).where(accounts.c.id.in_(ids)))
        return {row.id: row for row in rows}

    def item(self, row: Row) -> Item | None:
        raise NotImplementedError

    def flush(self, batch: list[Item]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """After the last chunk."""


