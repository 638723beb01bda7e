"""Shapes of an email's HTML: the values it shows replaced by numbered placeholders, only where
html2text passes them through untouched (templates.text_part converts one shape for many emails).
What is a function of a shape or a value alone is worked out once and kept, bounded."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence

from playbookd.templates.kept import Kept

_MARK, _LINK_MARK, _END = "\ue000", "\ue002", "\ue001"  # private-use characters: no email has them
_LINK_PREFIX = "a://"  # a placeholder for an absolute URL is one too, as html2text's automatic links ask
PLACED = re.compile(f"{_LINK_PREFIX}{_LINK_MARK}([0-9]+){_END}|{_MARK}([0-9]+){_END}")
# what html2text passes through untouched wherever it stands in text: nothing markupsafe escapes
# (an entity splits html2text's text, so escapes at the start of a piece would change), no
# backslash, bracket, parenthesis, `*`, backtick, `!`, `|`, `~` (a strike after it gets a space)
# or `>`, no whitespace but single spaces between word characters (collapsed, stripped), and a
# letter first, so that no line-start marker ("1. ", "- ", "+ ") can begin in or run into it
_WORDY = re.compile(r"[^\W\d_][\w.,@:/%+=?#-]*(?: [\w.,@:/%+=?#-]+)*")
_SPACED = re.compile(r"[^\w ] | [^\w ]")
_NUMBER = re.compile(r"[0-9]+")
# a number is replaced after a word and a space (not where a line starts), outside tags (numbers_placed)
_SPACE_NUMBER, _LETTER = re.compile(r" ([0-9]+)(?![0-9])"), re.compile(r"[^\W\d_]")
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


# What a worker keeps is counted in bytes as the process holds it (sys.getsizeof: 1, 2 or 4 bytes a
# character, as a string's widest one asks), not in characters: the bounds are there for the memory
# limit every later render runs under, and a value of emoji takes four times what one of letters does
KEPT_VALUE_BYTES = 640  # a value whose facts take more (a synced note) is looked at every time, never kept
KEPT_SHAPE_BYTES = 2**20  # bytes of shapes kept by the numbering, with their numbered forms, per generation


_MISSING = object()
FACTS = 4096  # values kept
_FACTS: dict[str, tuple[bool, str, bool, bool]] = {}
_NUMBERED: Kept[str, tuple[str, tuple[int, ...]] | None] = Kept(KEPT_SHAPE_BYTES)


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
            found = (shown, quoted(value), wordy, number)
        except UnicodeEncodeError:  # a lone surrogate (from event JSON): left in the shape as it is
            found = (False, value, False, False)
        if sys.getsizeof(value) + sys.getsizeof(found[1]) <= KEPT_VALUE_BYTES:  # the value and its quoted form
            if len(_FACTS) >= FACTS:
                _FACTS.clear()  # the values every email has are back after one email
            _FACTS[value] = found
    return found


_UNSAFE = re.compile(rb"[^A-Za-z0-9_.~/-]")  # what quote(value, safe="/") percent-encodes


def quoted(value: str) -> str:
    """quote(value, safe="/"), as `urlencode` puts a value in a link: urllib's goes through every
    byte in Python, this only through those it encodes (a new address or name in every email)."""
    return _UNSAFE.sub(lambda m: b"%%%02X" % m[0][0], value.encode()).decode("ascii")


def _placed(html: str, values: Sequence[str]) -> tuple[str, list[str]] | None:
    """The HTML with placeholders numbered by value, before the checks and the numbering by position."""
    if _MARK in html or _LINK_MARK in html or _END in html:
        return None
    facts = {v: _facts(v) for v in dict.fromkeys(values)}  # each value's facts asked once
    shown = [v for v, fact in facts.items() if fact[0]]
    unique = list(dict.fromkeys([*shown, *(facts[v][1] for v in shown)]))  # and as `urlencode` puts them
    kinds = [facts.get(v) or _facts(v) for v in unique]
    shape = html
    words = [(v, i) for i, v in enumerate(unique) if kinds[i][2]]
    for value, index in sorted(words, key=lambda vi: -len(vi[0])):
        shape = shape.replace(value, _placeholder(index, value))  # markupsafe leaves it as it is
    numbers = {v: _placeholder(i, v) for i, v in enumerate(unique) if kinds[i][3]}
    return (numbers_placed(shape, numbers) if numbers else shape), unique


def numbers_placed(shape: str, numbers: Mapping[str, str]) -> str:
    """The shape with each of `numbers` that stands after a word and a space, outside tags, replaced.
    Only the few places `_SPACE_NUMBER` finds are looked at, not every tag (a pass over all of them
    was almost half of making a shape). A tag is a `<` up to the next `>`: a number is in one when
    the last `<` before it (since the last number replaced, which stood outside) comes after the last
    `>` and a `>` follows. tests/templates/test_placeholders.py checks it against a regular expression
    that matches every tag."""
    out: list[str] = []
    at = 0
    for found in _SPACE_NUMBER.finditer(shape):
        placeholder = numbers.get(found[1])
        if placeholder is None or found.start() == 0 or not _LETTER.match(shape, found.start() - 1):
            continue
        start = found.start(1)
        if shape.rfind("<", at, start) > shape.rfind(">", at, start) and shape.find(">", start) != -1:
            continue
        out += [shape[at:start], placeholder]
        at = found.end()
    return "".join(out) + shape[at:] if out else shape


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
        numbered = PLACED.sub(lambda m: _renumbered(m, order), shape)
        found = numbered, tuple(order)
    weight = sys.getsizeof(shape) + (sys.getsizeof(found[0]) if found is not None else 0)
    if weight <= KEPT_SHAPE_BYTES:
        _NUMBERED.put(shape, found, weight)
    return found


def _renumbered(placed: re.Match[str], order: dict[int, int]) -> str:
    new = order.setdefault(placeholder_number(placed), len(order))
    return f"{_LINK_PREFIX}{_LINK_MARK}{new}{_END}" if placed[1] else f"{_MARK}{new}{_END}"


def placeholder_number(placed: re.Match[str]) -> int:
    return int(placed[1] or placed[2])
