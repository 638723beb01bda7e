"""What every source is: a Reader of rows, raw values with the source's renames applied.

Values are raw (CSV text, JSON scalars); typing them is sync's job (sync.columns). A row that
cannot be read carries an `error`, and only the values that could be read (to name it by); a
source that cannot be read at all raises SourceError.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from playbookd.config.settings import Limits, Source
from playbookd.errors import UserError

MAX_FIELD_BYTES: int = Limits.model_fields["max_field_bytes"].default


@dataclass
class Row:
    """One record of a source; `error` says why it is unreadable (then `values` only name it)."""

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
    def rows(self, source: Source, max_field_bytes: int) -> Iterator[Row]: ...

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


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict | list):
        return len(json.dumps(value, default=str))
    return 0  # numbers, booleans, dates: small by nature


def checked(line: int, values: dict[str, Any], max_field_bytes: int) -> Row:
    """The row, or a row problem naming the first value over `limits.max_field_bytes` (the values
    that fit are kept to name the row by)."""
    for name, value in values.items():
        if (size := _size(value)) > max_field_bytes:
            fitting = {k: v for k, v in values.items() if _size(v) <= max_field_bytes}
            return Row(line, fitting, f"{name}: {size} bytes, over limits.max_field_bytes ({max_field_bytes})")
    return Row(line, values)
