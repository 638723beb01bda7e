"""File sources: CSV with a header, and JSON Lines; rows streamed, numbered by their line.

A row with a byte that is not UTF-8 or a value over `limits.max_field_bytes` is a row problem;
the rows around it are read as usual. A file that changed while it was read raises SourceError
at the end, after its rows: sync applies nothing from it (see sources.textfile).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from typing import Any

from playbookd.config.settings import Source
from playbookd.sources.base import MAX_FIELD_BYTES, Row, SourceError, checked, rename_map, source_file
from playbookd.sources.textfile import Lines, SourceFile

JSONL_SAMPLE_LINES = 100
# A line with nothing to count its values by (a JSON line, a CSV header) may hold this many values
# of the largest size before it is refused unread.
LINE_VALUES = 64


def _csv_bound(width: int, max_field_bytes: int) -> int:
    """The longest a record of `width` cells can be when no value is over max_field_bytes: each
    cell quoted with every character a doubled quote, plus its comma, plus the line end. A longer
    record certainly has a value over the limit, so it need not be kept to know that."""
    return width * (2 * max_field_bytes + 3) + 2


def _allow_fields(bound: int) -> None:
    # csv's own limit (131072 characters by default) raises mid-record and resumes at the next line,
    # which would read the rest of a multi-line cell as records; records are bounded here instead
    if csv.field_size_limit() < bound:
        csv.field_size_limit(bound)


def _row_too_long(bound: int, max_field_bytes: int) -> str:
    return f"row longer than {bound} characters, so a value in it is over limits.max_field_bytes " \
           f"({max_field_bytes}); not read"


def _line_too_long(bound: int, max_field_bytes: int) -> str:
    return f"line longer than {bound} characters ({LINE_VALUES} values of limits.max_field_bytes, " \
           f"{max_field_bytes}); not read"


class CsvReader:
    """Comma-separated text with a header row; quoted cells may span lines."""

    def _header(self, source: Source, reader: Any, lines: Lines) -> list[str]:
        file = source_file(source)
        try:
            raw = next(reader)
        except StopIteration:
            raise SourceError(file, "empty file, expected a header row", 1) from None
        except csv.Error as exc:
            raise SourceError(file, f"malformed CSV header: {exc}", 1) from None
        _, problem = lines.end_record(1)
        if problem is not None:
            raise SourceError(file, f"header: {problem}", 1)
        renames = rename_map(source)
        names = [renames.get(col.strip(), col.strip()) for col in raw]
        for index, name in enumerate(names):
            if not name:
                raise SourceError(file, f"header column {index + 1} has no name", 1)
            if names.index(name) != index:
                raise SourceError(file, f"header names column {name!r} twice (after renames)", 1)
        return names

    def columns(self, source: Source) -> list[str]:
        with SourceFile(source) as opened:
            lines = self._lines(opened, MAX_FIELD_BYTES)
            return self._header(source, csv.reader(lines), lines)

    def rows(self, source: Source, max_field_bytes: int = MAX_FIELD_BYTES) -> Iterator[Row]:
        with SourceFile(source) as opened:
            lines = self._lines(opened, max_field_bytes)
            reader = csv.reader(lines)
            names = self._header(source, reader, lines)
            lines.bound = _csv_bound(len(names), max_field_bytes)
            lines.too_long = _row_too_long(lines.bound, max_field_bytes)
            _allow_fields(lines.bound)
            yield from self._body(reader, lines, names, max_field_bytes)
            opened.check_unchanged()

    @staticmethod
    def _lines(opened: SourceFile, max_field_bytes: int) -> Lines:
        bound = LINE_VALUES * max_field_bytes
        return Lines(opened.handle, opened.path, bound, _line_too_long(bound, max_field_bytes), csv_quotes=True)

    def _body(self, reader: Any, lines: Lines, names: list[str], max_field_bytes: int) -> Iterator[Row]:
        width = len(names)
        last = reader.line_num
        while True:
            broken = None
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # csv.reader starts afresh at the next line
                cells, broken = [], f"malformed CSV: {exc}"
            # a row starts right after the previous one ended, however many lines it spans
            start, last = last + 1, reader.line_num
            used, problem = lines.end_record(start)
            if problem or broken:
                yield Row(start, {}, problem or broken)
            elif len(cells) > width:
                yield Row(start, {}, f"row has {len(cells)} cells but the header has {width}")
            elif cells:
                # a short row (trailing cells trimmed by the exporter) supplies empty cells
                values = dict(zip(names, cells + [""] * (width - len(cells)), strict=True))
                # n characters are at most 4n bytes: a shorter record needs no measuring
                yield checked(start, values, max_field_bytes) if used * 4 > max_field_bytes else Row(start, values)


class JsonlReader:
    """One JSON object per line; blank lines are skipped."""

    def columns(self, source: Source) -> list[str]:
        seen: dict[str, None] = {}
        for row in islice(self.rows(source), JSONL_SAMPLE_LINES):
            seen.update(dict.fromkeys(row.values))
        return list(seen)

    def rows(self, source: Source, max_field_bytes: int = MAX_FIELD_BYTES) -> Iterator[Row]:
        renames = rename_map(source)
        bound = LINE_VALUES * max_field_bytes
        with SourceFile(source) as opened:
            lines = Lines(opened.handle, opened.path, bound, _line_too_long(bound, max_field_bytes),
                          csv_quotes=False)
            for text in lines:
                number = lines.number
                used, problem = lines.end_record(number)
                if problem is not None:
                    yield Row(number, {}, problem)
                elif text.strip():
                    row = _json_row(number, text, renames)
                    if used * 4 > max_field_bytes and row.error is None:
                        row = checked(number, row.values, max_field_bytes)
                    yield row
            opened.check_unchanged()


def _json_row(number: int, text: str, renames: dict[str, str]) -> Row:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(number, {}, f"bad JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return Row(number, {}, "bad JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return Row(number, {}, f"bad JSON: {exc}")
    if not isinstance(data, dict):
        return Row(number, {}, f"expected a JSON object, got {type(data).__name__}")
    return Row(number, {str(renames.get(key, key)): value for key, value in data.items()})
