"""Batching work: the one way the package splits a stream into lists.

Kept apart from the database module so the rules engine's worker processes can use it without
importing SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
CHUNK = 1000  # rows per statement or batch: large enough to amortise a round trip, small enough for memory


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Lists of at most `size` items, read lazily: the one way the package batches work."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
