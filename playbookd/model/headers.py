"""Header values made from data (a subject with an account's name, an account id in X-Account).

A header is one line: any line break (CR, LF, VT, FF, the separators U+001C to U+001E, NEL, U+2028,
U+2029) or other C0/C1 control character in synced data would either inject a header or make the
MIME library refuse the message, so each becomes a space. And a header is short: a 10 MB name
from a broken export is not a subject.
"""

from __future__ import annotations

import re

_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
ELLIPSIS = "…"


def one_line(text: str) -> str:
    """`text` with every line break and control character a space, runs of spaces one, no ends."""
    return " ".join(_BREAKS.sub(" ", text).split())


def capped(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to at most `limit` characters (an ellipsis marks the cut), and whether it was."""
    if len(text) <= limit:
        return text, False
    return text[:limit - 1].rstrip() + ELLIPSIS, True


def header_value(text: str, limit: int) -> tuple[str, bool]:
    """One line, at most `limit` characters; True when it had to be cut."""
    if len(text) > limit * 4:  # a huge value: cut before the regular expressions walk all of it
        text = text[:limit * 4]
        line, _ = capped(one_line(text), limit)
        return line, True
    return capped(one_line(text), limit)
