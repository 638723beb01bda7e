"""The plain-text part of an email, derived from its HTML.

Most emails of one template differ only in the values they show (a name, a link, a number), so
their text parts are one text with those values put in. `Deriver` converts a template's emails
through their *shape*: the HTML with each value it shows replaced by a placeholder. A shape is
converted once; each email with that shape gets the shape's text with its own values put back and
is then wrapped, which html2text does as a last pass over the whole text anyway. That gives what one
whole pass gives as long as html2text treats a placeholder exactly as it treats the value, so only
values it passes through untouched are replaced (`_replaceable`), only where it reads them as text
or as a link's address, and each shape's first email is also converted whole and compared: a
template whose shape and whole pass differ is converted whole from then on, as is any email whose
shape cannot be made. What is a function of a shape or a value alone (the checks, the numbering,
a value's `urlencode` form, the wrapping of a shape's fixed paragraphs) is worked out once and kept.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import html2text

from playbookd.templates.placeholders import PLACED, placeholder_number, shape_of


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


def _unwrapped(parser: html2text.HTML2Text) -> str:
    """What HTML2Text.handle does after feeding, up to its wrapping."""
    parser.feed("")
    return str(parser.finish())


_WRAPPER = _parser()  # only its settings are used: optwrap reads them, and the text given


_PARAGRAPHS: dict[str, tuple[str, bool | None]] = {}  # paragraph -> (its wrapped text, ends a block?)
PARAGRAPHS = 1024  # paragraphs kept: the fixed ones of a few dozen templates, and some that show values
KEPT_BYTES = 2048  # a paragraph that takes more memory (a synced note, a hostile loop) is wrapped, never
# kept: a worker lives for many emails, and what it keeps counts against every later render's memory
# limit. Counted as the process holds it (sys.getsizeof: 1, 2 or 4 bytes a character, as the widest
# one asks), not in characters: 2,048 characters of emoji take four times what 2,048 letters take


def _paragraph(para: str) -> tuple[str, bool | None]:
    """What html2text's optwrap makes of one non-empty paragraph, and whether it leaves two line
    breaks after it (True), one (False) or the count as it was (None: a line of spaces adds nothing).
    optwrap handles each such paragraph alone, so it is asked about this one alone."""
    found = _PARAGRAPHS.get(para)
    if found is None:
        piece = str(_WRAPPER.optwrap(para))
        found = (piece, None if piece == "" else piece.endswith("\n\n"))
        if sys.getsizeof(para) > KEPT_BYTES:
            return found
        if len(_PARAGRAPHS) >= PARAGRAPHS:
            _PARAGRAPHS.clear()
        _PARAGRAPHS[para] = found
    return found


def optwrap(text: str) -> str:
    """html2text's optwrap, each paragraph wrapped once per process: most of an email's paragraphs
    are the same in every email of its template (textwrap was a third of deriving a text part)."""
    if _WRAPPER.backquote_code_style:
        return str(_WRAPPER.optwrap(text))  # a code block spans paragraphs: not one at a time
    out: list[str] = []
    newlines = 0
    for para in text.split("\n"):
        if para:
            piece, ends = _paragraph(para)
            out.append(piece)
            newlines = newlines if ends is None else 2 if ends else 1
        elif newlines < 2:  # as optwrap: an empty line adds a line break up to two in a row
            out.append("\n")
            newlines += 1
    return "".join(out)


def _wrapped(text: str) -> str:
    """html2text's wrapping (a function of the text and the settings alone), then our own clean-up."""
    return _cleaned(optwrap(text))


_BLANK_LINES = re.compile(r"\n{3,}")


def _cleaned(wrapped: str) -> str:
    lines = [line.rstrip() for line in wrapped.strip().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)) + "\n"


def _finish(parser: html2text.HTML2Text) -> str:
    return _wrapped(_unwrapped(parser))


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


SHAPES = 256  # shapes kept per template
TRIES = 16  # shapes made before a template whose emails seldom share one is converted whole


class _Text:
    """A shape's text before wrapping, cut where optwrap cuts it (at line breaks, which no value put
    in has): a paragraph without a placeholder is wrapped once here, one with them after they are
    put in, so an email costs what its own values cost."""

    def __init__(self, unwrapped: str) -> None:
        self.fixed = bool(_WRAPPER.backquote_code_style)  # a code block spans paragraphs: the whole text
        self.unwrapped = unwrapped
        self.paragraphs: list[tuple[str, bool | None] | list[str | int] | None] = []
        for para in unwrapped.split("\n"):
            if not para:
                self.paragraphs.append(None)
            elif PLACED.search(para):
                pieces: list[str | int] = []
                for i, piece in enumerate(PLACED.split(para)):
                    if i % 3 == 0:
                        pieces.append(piece)
                    elif piece is not None:
                        pieces.append(int(piece))
                self.paragraphs.append(pieces)
            else:
                piece = str(_WRAPPER.optwrap(para))
                self.paragraphs.append((piece, None if piece == "" else piece.endswith("\n\n")))

    def text(self, unique: Sequence[str]) -> str:
        """_wrapped(the text with `unique` put in), as optwrap does it paragraph by paragraph."""
        if self.fixed:
            return _wrapped(PLACED.sub(lambda m: unique[placeholder_number(m)], self.unwrapped))
        out: list[str] = []
        newlines = 0
        for para in self.paragraphs:
            if para is None:
                if newlines < 2:
                    out.append("\n")
                    newlines += 1
                continue
            piece, ends = para if isinstance(para, tuple) else _paragraph(
                "".join(p if isinstance(p, str) else unique[p] for p in para))
            out.append(piece)
            newlines = newlines if ends is None else 2 if ends else 1
        return _cleaned("".join(out))


class Shapes:
    """html_to_text for the emails of one template, one conversion per shape (see the module's doc);
    `whole` converts an email whose shape is not known, or not to be trusted."""

    def __init__(self) -> None:
        self.whole = Deriver()
        self._texts: dict[str, _Text] = {}  # shape -> its text before wrapping
        self._made = self._reused = 0
        self.trusted = True

    def text(self, html: str, values: Sequence[str]) -> str:
        found = shape_of(html, values) if self.trusted else None
        if found is None:
            return self.whole.text(html)
        shape, unique = found
        known = self._texts.get(shape)
        if known is not None:
            self._reused += 1
            return known.text(unique)
        whole = self.whole.text(html)
        parser = _parser()
        parser.feed(shape)
        unwrapped = _unwrapped(parser)
        self._made += 1
        if _wrapped(PLACED.sub(lambda m: unique[placeholder_number(m)], unwrapped)) != whole:
            self.trusted = False
        elif len(self._texts) < SHAPES:
            self._texts[shape] = _Text(unwrapped)
        if self._made >= TRIES and self._reused < self._made:
            self.trusted = False
        return whole


def shown_values(context: Mapping[str, Any], depth: int = 3) -> list[str]:
    """The text and whole numbers in a template context, in its order: what an email may show."""
    found: list[str] = []
    for value in context.values():
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append(str(value))
        elif isinstance(value, Mapping) and depth > 1:
            found += shown_values(value, depth - 1)
    return found
