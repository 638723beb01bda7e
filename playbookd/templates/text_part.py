"""The plain-text part of an email, derived from its HTML."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import html2text


class _SkipHidden:
    """Drops display:none blocks (the preheader and its filler characters) from the text part."""

    def __init__(self) -> None:
        self.hidden: list[bool] = []

    def __call__(self, parser: Any, tag: str, attrs: Mapping[str, str | None], start: bool) -> bool:
        if tag in ("div", "span") and start:
            self.hidden.append("display:none" in (attrs.get("style") or "").replace(" ", "").lower())
            parser.quiet += self.hidden[-1]
        elif tag in ("div", "span") and self.hidden:
            parser.quiet -= self.hidden.pop()
        return False  # html2text still handles the tag itself


def html_to_text(html: str) -> str:
    """Plain-text part from the HTML: links kept as [text](url), images dropped, wrapped at 78."""
    parser = html2text.HTML2Text()
    parser.body_width = 78
    parser.ignore_images = True
    parser.ignore_emphasis = True
    parser.ignore_tables = True  # layout tables, not data: keep the text, drop the grid
    parser.tag_callback = _SkipHidden()  # type: ignore[assignment]  # html2text types it as None
    parser.wrap_links = False  # a wrapped URL is a broken URL
    parser.unicode_snob = True
    lines = [line.rstrip() for line in str(parser.handle(html)).strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"
