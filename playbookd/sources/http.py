"""HTTP sources: a paginated JSON API, one page at a time.

Pages are followed through a Link header or a `next` key; a record's number across pages is what
a problem names as its line.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from playbookd.config.settings import Source
from playbookd.sources.base import MAX_FIELD_BYTES, Row, SourceError, checked, rename_map, source_file

LIST_KEYS = ("data", "items", "results", "records")
NEXT_KEYS = ("next", "next_url", "links.next", "paging.next", "meta.next")
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
TIMEOUT = 30.0


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
    raise SourceError(source_file(source), f"response has no list of records (looked for {', '.join(paths)})")


def _next_url(body: Any, link_header: str | None, source: Source) -> str | None:
    if link_header and (match := _LINK_NEXT.search(link_header)):
        return match.group(1)
    for path in [source.next] if source.next else NEXT_KEYS:
        found = _dig(body, path)
        if isinstance(found, str) and found:
            return urllib.parse.urljoin(source.url or "", found)
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class HttpReader:
    """GET `url` with `headers`; follows `Link: rel=next` or a `next` URL in the body, page by page."""

    def columns(self, source: Source) -> list[str]:
        seen: dict[str, None] = {}
        for row in self._page_rows(source, 1, MAX_FIELD_BYTES):
            seen.update(dict.fromkeys(row.values))
        return list(seen)

    def rows(self, source: Source, max_field_bytes: int = MAX_FIELD_BYTES) -> Iterator[Row]:
        return self._page_rows(source, source.max_pages, max_field_bytes)

    def _page_rows(self, source: Source, max_pages: int, max_field_bytes: int) -> Iterator[Row]:
        if not source.url:
            raise SourceError(source_file(source), "an http source needs `url`")
        renames = rename_map(source)
        url: str | None = source.url
        seen: set[str] = set()
        number = 0
        while url and url not in seen and len(seen) < max_pages:
            seen.add(url)
            try:
                body, link = self._get(source, url)
                records = _records(body, source)
            except SourceError as exc:
                if len(seen) == 1:
                    raise
                raise SourceError(exc.file, f"{exc.reason} (page {len(seen)})", exc.line, exc.unreachable) from None
            for record in records:
                number += 1
                if isinstance(record, dict):
                    yield checked(number, {str(renames.get(k, k)): v for k, v in record.items()}, max_field_bytes)
                else:
                    yield Row(number, {}, f"expected a JSON object, got {type(record).__name__}")
            url = _next_url(body, link, source)

    @staticmethod
    def _get(source: Source, url: str) -> tuple[Any, str | None]:
        # the configured headers (credentials) go only where the configured URL goes: a `next` link
        # to another origin gets none
        same_origin = _origin(url) == _origin(source.url or "")
        headers = {"Accept": "application/json", **(source.headers if same_origin else {})}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read()), response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            down = exc.code >= 500 or exc.code in (408, 429)
            raise SourceError(source_file(source), f"GET {url}: HTTP {exc.code} {exc.reason}",
                              unreachable=down) from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(source_file(source), f"GET {url}: {getattr(exc, 'reason', exc)}",
                              unreachable=True) from None
        except json.JSONDecodeError as exc:
            raise SourceError(source_file(source), f"GET {url}: not JSON ({exc.msg})") from None
