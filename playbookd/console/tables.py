"""Every list in the console is a Table: shown as HTML, downloadable as CSV (`?csv=<id>`), paged."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode

BASE = "/console"  # the console's paths are a contract: the same on http.listen and on console.listen

# A cell starting with one of these is a formula to a spreadsheet; synced data is hostile.
FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Link:
    """A cell shown as a link to `href` (a console path built by the page, never from data alone)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    id: str
    columns: tuple[str, ...]
    rows: list[Sequence[Any]] = field(default_factory=list)
    page: int = 1
    has_next: bool = False
    empty: str = "Nothing here."


def href(*parts: str, **query: str) -> str:
    """A console path from ids as they are (an account id may hold `/`, `?` or worse): each part quoted."""
    path = "/".join([BASE, *(quote(part, safe="") for part in parts)])
    return f"{path}?{urlencode(query)}" if query else path


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def _safe(text: str) -> str:
    return "'" + text if text.startswith(FORMULA) else text


def to_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_safe(cell(value)) for value in row])
    return out.getvalue()


def paged(rows: list[Any], page: int, size: int) -> tuple[list[Any], bool]:
    """Queries fetch one row more than a page: whether there is a next page, without a count."""
    return rows[:size], len(rows) > size


def offset(page: int, size: int) -> int:
    return (max(page, 1) - 1) * size
