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
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import html2text

from playbookd.templates.kept import Kept


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
KEPT_CHARS = 2048  # a longer paragraph (a synced note, a hostile loop) is wrapped, never kept: a
# worker lives for many emails, and what it keeps counts against every later render's memory limit


def _paragraph(para: str) -> tuple[str, bool | None]:
    """What html2text's optwrap makes of one non-empty paragraph, and whether it leaves two line
    breaks after it (True), one (False) or the count as it was (None: a line of spaces adds nothing).
    optwrap handles each such paragraph alone, so it is asked about this one alone."""
    found = _PARAGRAPHS.get(para)
    if found is None:
        piece = str(_WRAPPER.optwrap(para))
        found = (piece, None if piece == "" else piece.endswith("\n\n"))
        if len(para) > KEPT_CHARS:
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


# ---- shapes --------------------------------------------------------------------------------------

_MARK, _LINK_MARK, _END = "\ue000", "\ue002", "\ue001"  # private-use characters: no email has them
_LINK_PREFIX = "a://"  # a placeholder for an absolute URL is one too, as html2text's automatic links ask
_PLACED = re.compile(f"{_LINK_PREFIX}{_LINK_MARK}([0-9]+){_END}|{_MARK}([0-9]+){_END}")
# what html2text passes through untouched wherever it stands in text: nothing markupsafe escapes
# (an entity splits html2text's text, so escapes at the start of a piece would change), no
# backslash, bracket, parenthesis, `*`, backtick, `!`, `|`, `~` (a strike after it gets a space)
# or `>`, no whitespace but single spaces between word characters (collapsed, stripped), and a
# letter first, so that no line-start marker ("1. ", "- ", "+ ") can begin in or run into it
_WORDY = re.compile(r"[^\W\d_][\w.,@:/%+=?#-]*(?: [\w.,@:/%+=?#-]+)*")
_SPACED = re.compile(r"[^\w ] | [^\w ]")
_NUMBER = re.compile(r"[0-9]+")
_SPACE_NUMBER, _LETTER = re.compile(r" ([0-9]+)(?![0-9])"), re.compile(r"[^\W\d_]")  # as _NUMBER_IN_TEXT, faster
_NUMBER_IN_TEXT = re.compile(r"(<[^>]*>)|(?<=[^\W\d_] )([0-9]+)(?![0-9])")  # after a word and a space: not where
# a line starts; tags are matched only to be passed over
# a tag as HTMLParser reads it when it is well formed (a quote opens a value only after "="), or a
# comment; anything else that opens like a tag makes no shape
_TAG = re.compile(r"""<!--.*?--\s*>|<[a-zA-Z/!?](?:[^"'>]|"[^"]*"|'[^']*')*+>?""", re.DOTALL)
_NAME = r"""<[a-zA-Z][^\s/>"'<]*"""
_ATTRIBUTE = r"""\s+([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
_NAME_AT, _ATTRIBUTES = re.compile(_NAME), re.compile(_ATTRIBUTE)
_WELL_FORMED = re.compile(rf"""</[a-zA-Z][^\s/>"'<]*\s*>|<![a-zA-Z](?:[^"'<>]|"[^"<>]*"|'[^'<>]*')*>"""
                          rf"|{_NAME}(?:{_ATTRIBUTE})*\s*/?>")
_INTO_ENTITY = re.compile(f"&[#\\w.-]*(?:{_MARK}|{_LINK_PREFIX}{_LINK_MARK})")  # "&co" + "py" is "&copy"
_ABSOLUTE = re.compile(r"[a-zA-Z+]+://")  # html2text's absolute_url_matcher
MIN_VALUE = 3  # characters: shorter words stay as they are (they would mostly match within other words)
SHAPES = 256  # shapes kept per template
TRIES = 16  # shapes made before a template whose emails seldom share one is converted whole


KEPT_VALUE_CHARS = 256  # a longer value (a synced note) is looked at every time, never kept
KEPT_SHAPE_CHARS = 2**20  # characters of shapes kept by the numbering, per generation (two at most)


_MISSING = object()
FACTS = 4096  # values kept
_FACTS: dict[str, tuple[bool, str, bool, bool]] = {}
_NUMBERED: Kept[str, tuple[str, tuple[int, ...]] | None] = Kept(KEPT_SHAPE_CHARS)


def _placeholder(index: int, value: str) -> str:
    if _ABSOLUTE.match(value):
        return f"{_LINK_PREFIX}{_LINK_MARK}{index}{_END}"
    return f"{_MARK}{index}{_END}"


def _in_text_or_link(shape: str) -> bool:
    """Every placeholder stands in text or in an href, never elsewhere in a tag, in a comment or
    where it could run into a character reference."""
    if _INTO_ENTITY.search(shape):
        return False
    for found in _TAG.finditer(shape):
        tag = found[0]
        if tag.startswith("<!--"):
            if _END in tag:  # dropped from the text, but where a comment ends differs between HTMLParsers
                return False
        elif not _WELL_FORMED.fullmatch(tag) or (_END in tag and not _only_in_href(tag)):
            return False
    return True


def _only_in_href(tag: str) -> bool:
    name = _NAME_AT.match(tag)
    if name is None or _END in name[0]:
        return False
    return all(_END not in attribute[0] or _in_href(attribute)
               for attribute in _ATTRIBUTES.finditer(tag, name.end()))


def _in_href(attribute: re.Match[str]) -> bool:
    """A quoted href: unquoted, a value with a space would end it where a placeholder does not."""
    value = attribute[2] or ""
    return attribute[1].lower() == "href" and value[:1] in "\"'" and _END in value


def shape_of(html: str, values: Sequence[str]) -> tuple[str, list[str]] | None:
    """The HTML with the values it shows as placeholders, and the values by placeholder number;
    None when a placeholder would stand where html2text may read it otherwise."""
    found = _placed(html, values)
    if found is None:
        return None
    placed, unique = found
    known = _numbered(placed)
    return None if known is None else (known[0], [unique[i] for i in known[1]])


def _facts(value: str) -> tuple[bool, str, bool, bool]:
    """Whether a shape replaces `value`, its `urlencode` form, and whether it is a word (replaced
    wherever it stands) or a number (replaced in text after a word): asked of the same few values
    (the company's, the globals') in every email, so kept."""
    found = _FACTS.get(value)
    if found is None:
        number = _NUMBER.fullmatch(value) is not None
        shown = (len(value) >= MIN_VALUE or number) and value not in _LINK_PREFIX
        wordy = _WORDY.fullmatch(value) is not None and not _SPACED.search(value)
        try:
            found = (shown, quote(value, safe="/"), wordy, number)
        except UnicodeEncodeError:  # a lone surrogate (from event JSON): left in the shape as it is
            found = (False, value, False, False)
        if len(value) <= KEPT_VALUE_CHARS:
            if len(_FACTS) >= FACTS:
                _FACTS.clear()  # the values every email has are back after one email
            _FACTS[value] = found
    return found


def _placed(html: str, values: Sequence[str]) -> tuple[str, list[str]] | None:
    """The HTML with placeholders numbered by value, before the checks and the numbering by position."""
    if _MARK in html or _LINK_MARK in html or _END in html:
        return None
    facts = [_facts(v) for v in values]
    shown = [v for v, fact in zip(values, facts, strict=True) if fact[0]]
    quoted = [fact[1] for fact in facts if fact[0]]
    unique = list(dict.fromkeys([*shown, *quoted]))  # and as `urlencode` puts them
    kinds = [_facts(v) for v in unique]
    shape = html
    words = [(v, i) for i, v in enumerate(unique) if kinds[i][2]]
    for value, index in sorted(words, key=lambda vi: -len(vi[0])):
        shape = shape.replace(value, _placeholder(index, value))  # markupsafe leaves it as it is
    numbers = {v: _placeholder(i, v) for i, v in enumerate(unique) if kinds[i][3]}
    if numbers and _number_to_place(shape, numbers):  # else the pass over every tag changes nothing
        shape = _NUMBER_IN_TEXT.sub(lambda m: m[1] or numbers.get(m[2], m[2]), shape)
    return shape, unique


def _number_to_place(shape: str, numbers: Mapping[str, str]) -> bool:
    """Whether one of `numbers` stands after a word and a space, in a tag or not: wherever
    _NUMBER_IN_TEXT puts a placeholder, and more. A space is looked for first: a look behind at
    every character costs as much as the whole pass."""
    for found in _SPACE_NUMBER.finditer(shape):
        if found[1] in numbers and found.start() > 0 and _LETTER.match(shape, found.start() - 1):
            return True
    return False


def _numbered(shape: str) -> tuple[str, tuple[int, ...]] | None:
    """The shape with its placeholders numbered in the order they stand, so that emails whose values
    differ in number share a shape, and which value each stands for; None where it cannot be trusted.
    A function of the shape alone (a placeholder says whether its value is a link), so kept by shape."""
    kept = _NUMBERED.get(shape, _MISSING)
    if kept is not _MISSING:
        return kept  # type: ignore[return-value]  # what was put: a numbered shape or None
    found: tuple[str, tuple[int, ...]] | None = None
    if _in_text_or_link(shape):
        order: dict[int, int] = {}
        numbered = _PLACED.sub(lambda m: _renumbered(m, order), shape)
        found = numbered, tuple(order)
    if len(shape) * 2 <= KEPT_SHAPE_CHARS:
        _NUMBERED.put(shape, found, len(shape) * 2)
    return found


def _renumbered(placed: re.Match[str], order: dict[int, int]) -> str:
    new = order.setdefault(_number(placed), len(order))
    return f"{_LINK_PREFIX}{_LINK_MARK}{new}{_END}" if placed[1] else f"{_MARK}{new}{_END}"


def _number(placed: re.Match[str]) -> int:
    return int(placed[1] or placed[2])


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
            elif _PLACED.search(para):
                pieces: list[str | int] = []
                for i, piece in enumerate(_PLACED.split(para)):
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
            return _wrapped(_PLACED.sub(lambda m: unique[_number(m)], self.unwrapped))
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
        if _wrapped(_PLACED.sub(lambda m: unique[_number(m)], unwrapped)) != whole:
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
