"""Numbers in a shape: replaced after a word and a space, outside tags, as one pass over every tag
(the regular expression below) replaces them. A value's `urlencode` form, as urllib makes it."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playbookd.templates.placeholders import numbers_placed, quoted

# the reference: tags matched only to be passed over, a number after a word and a space replaced
EVERY_TAG = re.compile(r"(<[^>]*>)|(?<=[^\W\d_] )([0-9]+)(?![0-9])")
NUMBERS = {"5": "<N5>", "12": "<N12>", "3": "<N3>"}


def reference(shape: str, numbers: dict[str, str]) -> str:
    return EVERY_TAG.sub(lambda m: m[1] or numbers.get(m[2], m[2]), shape)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(["<", ">", "a", "b", " ", "5", "12", "3", "7", "é", "_", "\n", "<p>", "</p>",
                                 '<a href="x 5">', "x 12 ", "<!-- 5 -->"]), max_size=40).map("".join))
def test_numbers_are_placed_where_a_pass_over_every_tag_places_them(shape: str) -> None:
    assert numbers_placed(shape, NUMBERS) == reference(shape, NUMBERS)


def test_a_number_in_a_tag_stays_and_one_in_text_is_placed() -> None:
    shape = '<p title="seats 5">You have 5 seats, 12 left</p> < and 3 with no tag closed'
    placed = '<p title="seats 5">You have <N5> seats, 12 left</p> < and <N3> with no tag closed'
    assert numbers_placed(shape, NUMBERS) == placed
    assert numbers_placed(shape, NUMBERS) == reference(shape, NUMBERS)


@settings(max_examples=2000, deadline=None)
@given(st.text())
def test_a_value_is_quoted_as_urllib_quotes_it(value: str) -> None:
    """`urlencode` puts a value in a link as quote(value, safe="/") does: the shape looks for that form."""
    try:
        expected = quote(value, safe="/")
    except UnicodeEncodeError:  # a lone surrogate: neither encodes it
        with pytest.raises(UnicodeEncodeError):
            quoted(value)
        return
    assert quoted(value) == expected


def test_a_value_with_every_kind_of_character_is_quoted_as_urllib_quotes_it() -> None:
    value = "Ana María O'Neil <ana+1@x.example> ~/a-b_c.d 100% & 中 😀 \x00\x7f"
    assert quoted(value) == quote(value, safe="/")
    assert quoted("") == "" and quoted("plain/path-1_2.3~") == "plain/path-1_2.3~"
