"""Sources that are not files: a SQL query on any SQLAlchemy URL, and a paginated JSON API.

Both stream: SQL rows come from a server-side cursor, HTTP pages one at a time. Values are
handed to sync as JSON-like scalars (dates and decimals as ISO text), so typing works the same
as for csv and jsonl. A row's number (SQL) or record number across pages (HTTP) is what a
problem names as its line.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from playbookd.config.settings import Source
from playbookd.sources.files import Row, SourceError

LIST_KEYS = ("data", "items", "results", "records")
NEXT_KEYS = ("next", "next_url", "links.next", "paging.next", "meta.next")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
TIMEOUT = 30.0


def _where(source: Source) -> str:
    return f"source {source.name}"


def _scalar(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _renamed(source: Source, names: Iterable[str]) -> list[str]:
    renames = {theirs: ours for ours, theirs in source.fields.items()}
    return [renames.get(name, name) for name in names]


@cache
def _engine(url: str) -> Engine:
    return create_engine(url)


class SqlReader:
    """`url` (a SQLAlchemy URL) and `query`; each result row is a record, columns are fields."""

    def columns(self, source: Source) -> list[str]:
        with self._result(source) as result:
            return _renamed(source, result.keys())

    def rows(self, source: Source) -> Iterator[Row]:
        with self._result(source) as result:
            keys = _renamed(source, result.keys())
            try:
                for number, row in enumerate(result, start=1):
                    yield Row(number, {k: _scalar(v) for k, v in zip(keys, row, strict=True)})
            except SQLAlchemyError as exc:
                raise SourceError(_where(source), f"query failed while reading: {_reason(exc)}") from None

    def _result(self, source: Source) -> Any:
        if not source.url or not source.query:
            raise SourceError(_where(source), "a sql source needs `url` and `query`")
        try:
            conn = _engine(source.url).connect().execution_options(stream_results=True, yield_per=1000)
            return _Closing(conn, conn.execute(text(source.query)))
        except SQLAlchemyError as exc:
            raise SourceError(_where(source), f"query failed: {_reason(exc)}") from None


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
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _records(body: Any, source: Source) -> list[Any]:
    if isinstance(body, list):
        return body
    paths = [source.records] if source.records else list(LIST_KEYS)
    for path in paths:
        found = _dig(body, path)
        if isinstance(found, list):
            return found
    raise SourceError(_where(source), f"response has no list of records (looked for {', '.join(paths)})")


def _next_url(body: Any, link_header: str | None, source: Source) -> str | None:
    if link_header and (match := _LINK_NEXT.search(link_header)):
        return match.group(1)
    for path in [source.next] if source.next else NEXT_KEYS:
        found = _dig(body, path)
        if isinstance(found, str) and found:
            return urllib.parse.urljoin(source.url or "", found)
    return None


class HttpReader:
    """GET `url` with `headers`; follows `Link: rel=next` or a `next` URL in the body, page by page."""

    def columns(self, source: Source) -> list[str]:
        seen: dict[str, None] = {}
        for row in self._page_rows(source, max_pages=1):
            seen.update(dict.fromkeys(row.values))
        return list(seen)

    def rows(self, source: Source) -> Iterator[Row]:
        return self._page_rows(source, max_pages=source.max_pages)

    def _page_rows(self, source: Source, max_pages: int) -> Iterator[Row]:
        if not source.url:
            raise SourceError(_where(source), "an http source needs `url`")
        renames = {theirs: ours for ours, theirs in source.fields.items()}
        url: str | None = source.url
        seen: set[str] = set()
        number = 0
        while url and url not in seen and len(seen) < max_pages:
            seen.add(url)
            body, link = self._get(source, url)
            for record in _records(body, source):
                number += 1
                if isinstance(record, dict):
                    yield Row(number, {str(renames.get(k, k)): v for k, v in record.items()})
                else:
                    yield Row(number, {}, f"expected a JSON object, got {type(record).__name__}")
            url = _next_url(body, link, source)

    @staticmethod
    def _get(source: Source, url: str) -> tuple[Any, str | None]:
        request = urllib.request.Request(url, headers={"Accept": "application/json", **source.headers})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read()), response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            raise SourceError(_where(source), f"GET {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(_where(source), f"GET {url}: {getattr(exc, 'reason', exc)}") from None
        except json.JSONDecodeError as exc:
            raise SourceError(_where(source), f"GET {url}: not JSON ({exc.msg})") from None
