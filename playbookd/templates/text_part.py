"""The plain-text part of an email, derived from its HTML."""

from __future__ import annotations

import copy
import os
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


def _parser() -> html2text.HTML2Text:
    parser = html2text.HTML2Text()
    parser.body_width = 78
    parser.ignore_images = True
    parser.ignore_emphasis = True
    parser.ignore_tables = True  # layout tables, not data: keep the text, drop the grid
    parser.tag_callback = _SkipHidden()  # type: ignore[assignment]  # html2text types it as None
    parser.wrap_links = False  # a wrapped URL is a broken URL
    parser.unicode_snob = True
    parser.start = True  # as HTML2Text.handle sets it before feeding
    return parser


def _finish(parser: html2text.HTML2Text) -> str:
    """What HTML2Text.handle does after feeding, then our own clean-up."""
    parser.feed("")
    lines = [line.rstrip() for line in str(parser.optwrap(parser.finish())).strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def html_to_text(html: str) -> str:
    """Plain-text part from the HTML: links kept as [text](url), images dropped, wrapped at 78."""
    parser = _parser()
    parser.feed(html)
    return _finish(parser)


MIN_SHARED = 512  # characters: below this, keeping a parser's state saves less than copying it costs


class Deriver:
    """html_to_text for the emails of one template, without parsing again what they all begin with.

    Emails of one template share their opening (the layout's head, styles and tables) up to the
    first value that differs. The parser's state after that opening, cut before a tag, is kept;
    each later email that begins with the same text gets a copy of it and is fed only the rest.
    HTMLParser hands on text up to each tag as it is fed, so the result is the same as one pass
    over the whole (tests/templates/test_text_part.py checks it); an email that begins otherwise
    gets the whole pass.
    """

    def __init__(self) -> None:
        self._first: str | None = None
        self._shared = ""
        self._state: html2text.HTML2Text | None = None

    def text(self, html: str) -> str:
        if self._state is None:
            self._learn(html)
        if self._state is not None and html.startswith(self._shared):
            parser = copy.deepcopy(self._state)
            parser.feed(html[len(self._shared):])
            return _finish(parser)
        return html_to_text(html)

    def _learn(self, html: str) -> None:
        """The first email is kept; the second, compared with it, gives the opening they share."""
        if self._first is None:
            self._first = html
            return
        shared = len(os.path.commonprefix([self._first, html]))  # noqa: RUF071  # characters, as wanted
        cut = self._first.rfind("<", 0, shared)  # before a tag: all text up to it is handled by then
        self._first = None
        if cut < MIN_SHARED:
            return
        parser = _parser()
        parser.feed(html[:cut])
        if parser.rawdata or parser.cdata_elem is not None:  # in the middle of something: no state to keep
            return
        self._shared, self._state = html[:cut], parser
