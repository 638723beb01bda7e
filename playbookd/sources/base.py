"""What every source is: a Reader of rows, raw values with the source's renames applied.

Values are raw (CSV text, JSON scalars); typing them is sync's job (sync.columns). A row that
cannot be read carries an `error` instead of values; a source that cannot be read at all
raises SourceError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from playbookd.config.settings import Source
from playbookd.errors import UserError


@dataclass
class Row:
    """One record of a source; `error` is set instead of values when the record is unreadable."""

    line: int
    values: dict[str, Any]
    error: str | None = None


class SourceError(UserError):
    """The source as a whole cannot be read (missing file, bad header, bad encoding). `unreachable`
    when the system behind it cannot be reached (a database or API that is down): a dependency
    problem, not a mistake in the data or the config."""

    def __init__(self, file: str, reason: str, line: int | None = None, unreachable: bool = False) -> None:
        self.file, self.reason, self.line, self.unreachable = file, reason, line, unreachable
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {reason}")


class Reader(Protocol):
    def rows(self, source: Source) -> Iterator[Row]: ...

    def columns(self, source: Source) -> list[str]: ...


def source_file(source: Source) -> str:
    """What problems of this source name as their file."""
    return str(source.path) if source.path is not None else f"source {source.name}"


def rename_map(source: Source) -> dict[str, str]:
    """Their column name -> ours, from the source's `fields` (ours: theirs)."""
    return {theirs: ours for ours, theirs in source.fields.items()}


def our_names(source: Source, names: Iterable[str]) -> list[str]:
    renames = rename_map(source)
    return [renames.get(name, name) for name in names]
