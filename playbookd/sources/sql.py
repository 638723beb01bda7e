"""SQL sources: a query on any SQLAlchemy URL, streamed from a server-side cursor.

Values are handed to sync as JSON-like scalars (dates and decimals as ISO text), so typing works
the same as for csv and jsonl. A row's number is what a problem names as its line.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from functools import cache
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from playbookd.config.settings import Source
from playbookd.sources.base import MAX_FIELD_BYTES, Row, SourceError, checked, our_names, source_file


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


@cache
def _engine(url: str) -> Engine:
    return create_engine(url)


class SqlReader:
    """`url` (a SQLAlchemy URL) and `query`; each result row is a record, columns are fields."""

    def columns(self, source: Source) -> list[str]:
        with self._result(source) as result:
            return our_names(source, result.keys())

    def rows(self, source: Source, max_field_bytes: int = MAX_FIELD_BYTES) -> Iterator[Row]:
        with self._result(source) as result:
            keys = our_names(source, result.keys())
            try:
                for number, row in enumerate(result, start=1):
                    yield checked(number, {k: _scalar(v) for k, v in zip(keys, row, strict=True)}, max_field_bytes)
            except SQLAlchemyError as exc:
                raise SourceError(source_file(source), f"query failed while reading: {_reason(exc)}",
                                  unreachable=_lost(exc)) from None

    def _result(self, source: Source) -> Any:
        if not source.url or not source.query:
            raise SourceError(source_file(source), "a sql source needs `url` and `query`")
        try:
            conn = _engine(source.url).connect().execution_options(stream_results=True, yield_per=1000)
        except SQLAlchemyError as exc:
            raise SourceError(source_file(source), f"cannot connect: {_reason(exc)}", unreachable=True) from None
        try:
            return _Closing(conn, conn.execute(text(source.query)))
        except SQLAlchemyError as exc:
            conn.close()
            raise SourceError(source_file(source), f"query failed: {_reason(exc)}") from None


class _Closing:
    """The result and its connection, closed together when reading ends (or is abandoned)."""

    def __init__(self, conn: Any, result: Any) -> None:
        self.conn, self.result = conn, result

    def __enter__(self) -> Any:
        return self.result

    def __exit__(self, *exc: object) -> None:
        self.result.close()
        self.conn.close()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's whole message on one line (psycopg puts the hint on the next)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _lost(exc: SQLAlchemyError) -> bool:
    """The connection went away mid-read (the server restarted): worth retrying, not a wrong query."""
    return isinstance(exc, OperationalError | InterfaceError) or bool(getattr(exc, "connection_invalidated", False))
