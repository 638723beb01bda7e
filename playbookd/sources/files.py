"""File sources: CSV with a header, and JSON Lines; rows streamed, numbered by their line."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

from playbookd.config.settings import Source
from playbookd.sources.base import Row, SourceError, rename_map, source_file

JSONL_SAMPLE_LINES = 100


def _open(source: Source) -> IO[str]:
    if source.path is None:
        raise SourceError(f"source {source.name}", f"a {source.kind} source needs a `path`")
    path = Path(source.path)
    try:
        # utf-8-sig drops the byte-order mark spreadsheet exports put in front of the header
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise SourceError(str(path), f"no such file (source {source.name})") from None
    except IsADirectoryError:
        raise SourceError(str(path), f"is a directory, expected a file (source {source.name})") from None
    except OSError as exc:
        raise SourceError(str(path), f"cannot read: {exc.strerror} (source {source.name})") from None


class CsvReader:
    """Comma-separated text with a header row; quoted cells may span lines."""

    def _header(self, source: Source, reader: Any) -> list[str]:
        file = source_file(source)
        try:
            raw = next(reader)
        except StopIteration:
            raise SourceError(file, "empty file, expected a header row", 1) from None
        renames = rename_map(source)
        names = [renames.get(col.strip(), col.strip()) for col in raw]
        for index, name in enumerate(names):
            if not name:
                raise SourceError(file, f"header column {index + 1} has no name", 1)
            if names.index(name) != index:
                raise SourceError(file, f"header names column {name!r} twice (after renames)", 1)
        return names

    def columns(self, source: Source) -> list[str]:
        with _open(source) as handle:
            return self._header(source, csv.reader(handle))

    def rows(self, source: Source) -> Iterator[Row]:
        file = source_file(source)
        with _open(source) as handle:
            reader = csv.reader(handle)
            try:
                names = self._header(source, reader)
                yield from self._body(reader, names)
            except UnicodeDecodeError:
                raise SourceError(file, "not valid UTF-8 text", reader.line_num + 1) from None
            except csv.Error as exc:
                raise SourceError(file, f"malformed CSV: {exc}", reader.line_num) from None

    def _body(self, reader: Any, names: list[str]) -> Iterator[Row]:
        width = len(names)
        last = reader.line_num
        for cells in reader:
            # a row starts right after the previous one ended, however many lines it spans
            start, last = last + 1, reader.line_num
            if not cells:
                continue
            if len(cells) > width:
                yield Row(start, {}, f"row has {len(cells)} cells but the header has {width}")
                continue
            # a short row (trailing cells trimmed by the exporter) supplies empty cells
            yield Row(start, dict(zip(names, cells + [""] * (width - len(cells)), strict=True)))


class JsonlReader:
    """One JSON object per line; blank lines are skipped."""

    def columns(self, source: Source) -> list[str]:
        seen: dict[str, None] = {}
        for row in islice(self.rows(source), JSONL_SAMPLE_LINES):
            seen.update(dict.fromkeys(row.values))
        return list(seen)

    def rows(self, source: Source) -> Iterator[Row]:
        renames = rename_map(source)
        with _open(source) as handle:
            number = 0
            try:
                for number, text in enumerate(handle, start=1):
                    if text.strip():
                        yield _json_row(number, text, renames)
            except UnicodeDecodeError:
                raise SourceError(source_file(source), "not valid UTF-8 text", number + 1) from None


def _json_row(number: int, text: str, renames: dict[str, str]) -> Row:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(number, {}, f"bad JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(data, dict):
        return Row(number, {}, f"expected a JSON object, got {type(data).__name__}")
    return Row(number, {str(renames.get(key, key)): value for key, value in data.items()})
