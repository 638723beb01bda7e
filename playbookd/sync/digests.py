"""Digests of source rows: a row whose digest is the one stored with its account or contact is
unchanged since the last sync, and is counted so before it is typed, segmented or compared.

A digest covers the row's raw values in their order and what else shapes what is stored from them
(the run's `context`: its source, declared types, segments, time zone, this module's version), so
editing any of these makes every row compare in full again. The first accounts source's digest is
on the account, a later one's in `account_digests` (keyed by source), so two sources over the same
ids each skip their own unchanged rows; an account one source changed is compared in full by the
others. The other writers of those rows (a playbook's `set` step, a bounce) clear the digests.
Segments or health that read the clock, changes or history are re-evaluated every sync, so with
those no row is skipped (`skipping`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from playbookd.config.settings import Config
from playbookd.model.conditions import AnyField, parse_condition_data, static

# bump when typing, checks or what a row stores change for the same input
VERSION = 1


def context(*parts: Any) -> bytes:
    return json.dumps([VERSION, *parts], sort_keys=True, default=str).encode()


def digest(prefix: bytes, values: Mapping[str, Any], position: int = 0) -> str:
    """The row's digest. Names and values joined by a separator none of them holds (the plain text
    of csv, and fastest), else repr(), which tells apart what other sources give (numbers, dates,
    nested JSON) and never holds a bare separator; an object without a stable repr only costs the
    shortcut."""
    try:
        text = _SEP.join([*values, *values.values()])
    except TypeError:
        text = ""
    if text.count(_SEP) != 2 * len(values) - 1:
        text = repr(tuple(values.items()))
    return hashlib.blake2b(prefix + f"{position}\x1e{text}".encode("utf-8", "surrogatepass"),
                           digest_size=16).hexdigest()


_SEP = "\x1f"


def skipping(config: Config) -> bool:
    """Whether unchanged rows may be skipped: every segment condition reads field values alone
    (config validation has reported bad conditions already; one that does not parse is not skipped)."""
    for segment in config.segments:
        if segment.when is None:
            continue
        cond, problems = parse_condition_data(segment.when, str(config.path), AnyField({}))
        if problems or not static(cond):
            return False
    return True


def segments_context(config: Config) -> Any:
    return [[s.name, s.when] for s in config.segments], config.timezone
