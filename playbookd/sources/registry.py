"""Which Reader reads a source, by its `kind`: the one way sync and validation open a source."""

from __future__ import annotations

from collections.abc import Iterator

from playbookd.config.settings import Source
from playbookd.errors import UserError
from playbookd.sources.base import MAX_FIELD_BYTES, Reader, Row
from playbookd.sources.files import CsvReader, JsonlReader
from playbookd.sources.http import HttpReader
from playbookd.sources.sql import SqlReader

READERS: dict[str, Reader] = {
    "csv": CsvReader(),
    "jsonl": JsonlReader(),
    "sql": SqlReader(),
    "http": HttpReader(),
}


def reader_for(source: Source) -> Reader:
    try:
        return READERS[source.kind]
    except KeyError:
        raise UserError(f"source {source.name}: unknown kind {source.kind!r}") from None


def read_rows(source: Source, max_field_bytes: int = MAX_FIELD_BYTES) -> Iterator[Row]:
    """Stream the source's rows; raises SourceError when the source itself is unreadable, possibly
    after some rows (a file changed while read, a database gone mid-query)."""
    return reader_for(source).rows(source, max_field_bytes)


def source_columns(source: Source) -> list[str]:
    """Our names of the fields the source supplies (after renames)."""
    return reader_for(source).columns(source)
