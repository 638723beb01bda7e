"""One canonical form per mailbox: comments and quoting gone, lowercased, IDNA domain, Unicode local part kept."""

from __future__ import annotations

import re

import pytest
from email_validator import validate_email
from hypothesis import given
from hypothesis import strategies as st

from playbookd.model import addresses
from playbookd.model.addresses import AddressError, canonical, lookup_form, needs_smtputf8


@pytest.mark.parametrize(("raw", "expected"), [
    ("a@example.com", "a@example.com"),
    ("  Ana.Rivera+news@Harbor.Example ", "ana.rivera+news@harbor.example"),
    ("a(x)@example.com", "a@example.com"),  # a comment is no part of the mailbox
    ("(note)a@example.com (Ana)", "a@example.com"),
    ("a(nested (comment))@example.com", "a@example.com"),
    ('"a"@example.com', "a@example.com"),  # needless quoting
    ("user@bücher.example", "user@xn--bcher-kva.example"),  # IDNA
    ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
    ("josé@exämple.com", "josé@xn--exmple-cua.com"),  # the local part stays Unicode: SMTPUTF8
    ("JOSÉ@xn--exmple-cua.com", "josé@xn--exmple-cua.com"),
])
def test_canonical_forms(raw: str, expected: str) -> None:
    assert canonical(raw) == expected
    assert canonical(expected) == expected  # idempotent: stored forms compare as plain strings


@pytest.mark.parametrize(("raw", "why"), [
    ("", "no address"),
    ("not-an-email", "must have an @-sign"),
    ("a@b", "should have a period"),
    ("a@localhost", "should have a period"),
    ("a@harbor.test", "special-use or reserved"),
    ("a..b@x.example", "two periods in a row"),
    ("Ana <a@x.example>", "without a name or angle brackets"),
    ("a@x.example, b@x.example", "invalid characters"),
    ("a@[192.0.2.1]", "bracketed IP address"),
    ('"a b"@x.example', "quoted local part"),
    ("a(x@x.example", "comment '(' is not closed"),
    ("a@x.example\nBcc: b@x.example", "line break"),
    ("a\u2028@x.example", "line break"),
    ("a@ab--c.example", "two dashes"),
])
def test_what_is_not_a_deliverable_mailbox_says_why(raw: str, why: str) -> None:
    with pytest.raises(AddressError, match=re.escape(why)):
        canonical(raw)


def test_lookup_form_falls_back_to_the_typed_text() -> None:
    assert lookup_form("A(x)@Example.com") == "a@example.com"
    assert lookup_form(" Legacy..Address@X.example ") == "legacy..address@x.example"


def test_only_a_non_ascii_local_part_needs_smtputf8() -> None:
    assert needs_smtputf8("josé@xn--exmple-cua.com")
    assert not needs_smtputf8(canonical("user@bücher.example"))


ATOM = st.text("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=12)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[a-z]{2,6}", fullmatch=True) | st.sampled_from(["test", "local", "onion", "arpa", "invalid"])


@given(st.lists(ATOM, min_size=1, max_size=3), st.lists(LABEL, min_size=1, max_size=3), TLD)
def test_the_fast_path_agrees_with_the_validator(atoms: list[str], labels: list[str], tld: str) -> None:
    text = ".".join(atoms) + "@" + ".".join([*labels, tld])
    if not addresses._plain(text):
        return
    assert validate_email(text, check_deliverability=False).normalized.lower() == text
