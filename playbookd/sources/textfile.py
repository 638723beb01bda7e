"""Reading a source file safely: line by line, each line bounded, the file unchanged throughout.

Lines are decoded one at a time (invalid bytes kept as surrogates, then found per line), so a byte
that is not UTF-8 is a problem of its own line and column, not of the 8 KB block a text stream
decodes it in, and the rest of the file is still read. A line is read up to the record's bound: a
longer one is read on in chunks and dropped, so a huge value never sits in memory whole. A file
that changes while it is read (an export being rewritten) is refused whole: half of the old file
and half of the new one is neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from playbookd.config.settings import Source
from playbookd.sources.base import SourceError, source_file

SKIP_CHUNK = 65_536  # characters read at a time from a line too long to keep

# Called after each line is read with (path, line number). Tests use it to change a file at a
# chosen line; nothing else sets it.
line_hook: Callable[[Path, int], None] | None = None


def _open(source: Source) -> IO[str]:
    if source.path is None:
        raise SourceError(f"source {source.name}", f"a {source.kind} source needs a `path`")
    path = Path(source.path)
    try:
        # utf-8-sig drops the byte-order mark spreadsheet exports put in front of the header; newline=""
        # splits lines at \n, \r\n and \r alike and leaves the csv module to read them
        return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise SourceError(str(path), f"no such file (source {source.name})") from None
    except IsADirectoryError:
        raise SourceError(str(path), f"is a directory, expected a file (source {source.name})") from None
    except OSError as exc:
        raise SourceError(str(path), f"cannot read: {exc.strerror} (source {source.name})") from None


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class SourceFile:
    """An open source file and what it was when opened (device, inode, size, modification time)."""

    def __init__(self, source: Source) -> None:
        self.file = source_file(source)
        self.handle = _open(source)
        self.path = Path(self.handle.name)
        self.opened = os.fstat(self.handle.fileno())

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.handle.close()

    def check_unchanged(self) -> None:
        """SourceError (worth retrying) when the file was modified, truncated, extended or replaced
        since it was opened."""
        before = self.opened
        after = os.fstat(self.handle.fileno())
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        if named is not None and _identity(before) == _identity(after) == _identity(named):
            return
        if named is None or (named.st_dev, named.st_ino) != (before.st_dev, before.st_ino):
            what = "replaced by another file"
        elif before.st_size != after.st_size:
            what = f"size {before.st_size} -> {after.st_size} bytes"
        else:
            what = "modified"
        raise SourceError(self.file, f"changed while being read ({what}); it is read again at the next sync",
                          unreachable=True)


class Lines:
    """The file's physical lines, for csv.reader or the JSON Lines loop.

    What is wrong with the record in progress (a byte that is not UTF-8, a record over `bound`
    characters) is noted, not raised: the caller takes it with `end_record` and reports that
    record alone. `csv_quotes`: an over-long line is replaced by one that leaves csv.reader inside
    or outside a quoted cell as the original did, so the records after it are read as written."""

    def __init__(self, handle: IO[str], path: Path, bound: int, too_long: str, csv_quotes: bool) -> None:
        self.handle, self.path, self.bound, self.too_long, self.csv_quotes = handle, path, bound, too_long, csv_quotes
        self.number = 0
        self.used = 0  # characters of the record in progress
        self.problems: list[tuple[int, str]] = []  # (line, why) in the record in progress

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        room = max(self.bound - self.used, 0)
        line = self.handle.readline(room + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if line_hook is not None:
            line_hook(self.path, self.number)
        self.used += len(line)
        if len(line) > room:
            return self._skip(line, room + 1)
        if not line.isascii():
            self._check_text(line)
        return line

    def _check_text(self, line: str) -> None:
        try:
            line.encode()
        except UnicodeEncodeError as exc:
            byte = ord(line[exc.start]) - 0xDC00  # surrogateescape keeps an undecodable byte as U+DC80..U+DCFF
            self.problems.append((self.number, f"not valid UTF-8: byte 0x{byte:02x} at column {exc.start + 1}"))

    def _skip(self, piece: str, limit: int) -> str:
        """Read the rest of an over-long line in chunks and drop it."""
        quotes = piece.count('"')
        # a piece shorter than what was asked for ended at a line end (or the end of the file)
        while len(piece) == limit and not piece.endswith("\n"):
            piece = self.handle.readline(SKIP_CHUNK)
            limit = SKIP_CHUNK
            quotes += piece.count('"')
            self.used += len(piece)
        if not self.problems or self.problems[-1][1] != self.too_long:
            self.problems.append((self.number, self.too_long))
        # an odd number of quotes opens or closes a quoted cell; one quote does the same
        return '"\n' if self.csv_quotes and quotes % 2 else "\n"

    def end_record(self, start: int) -> tuple[int, str | None]:
        """The characters and the problem (None when it has none) of the record that began at line
        `start` and ends at the line read last; the next line begins a new record."""
        used, problems = self.used, self.problems
        self.used = 0
        if not problems:
            return used, None
        self.problems = []
        return used, "; ".join(why if line == start else f"line {line}: {why}" for line, why in problems)
