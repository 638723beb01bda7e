"""Unsubscribe tokens: only the exact token that was signed verifies."""

from __future__ import annotations

import string

import pytest

from playbookd.delivery.unsubscribe import sign, verify

SECRET = b"s3cret"
ALPHABET = string.ascii_letters + string.digits + "-_"


def test_a_genuine_token_verifies() -> None:
    assert verify(SECRET, sign(SECRET, "Ana@Customer.example", "product_tips")) == ("ana@customer.example",
                                                                                  "product_tips")


@pytest.mark.parametrize("part", [0, 1], ids=["payload", "mac"])
def test_every_other_last_character_fails(part: int) -> None:
    # the last character of unpadded base64 carries unused low bits: a lenient decoder maps
    # several characters to the same bytes, so an altered token used to verify
    pieces = sign(SECRET, "ana@customer.example", "product_tips").split(".")
    others = [c for c in ALPHABET if c != pieces[part][-1]]
    for char in others:
        altered = list(pieces)
        altered[part] = altered[part][:-1] + char
        assert verify(SECRET, ".".join(altered)) is None, char


@pytest.mark.parametrize("change", [lambda t: t + "=", lambda t: t + "==", lambda t: t[:5] + "!" + t[5:],
                                    lambda t: t[:5] + "\n" + t[5:], lambda t: t + "A"],
                         ids=["padding", "double padding", "stray character", "line break", "extra character"])
def test_padding_and_stray_characters_fail(change: object) -> None:
    token = sign(SECRET, "ana@customer.example", "product_tips")
    assert verify(SECRET, change(token)) is None  # type: ignore[operator]
