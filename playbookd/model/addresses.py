"""Email addresses in one canonical form, decided once where an address enters (sync, unsubscribe,
`suppress`, `forget`) so that every later comparison (suppressions, the frequency cap, bounces) is
a plain string match.

The canonical form is the addr-spec without comments or needless quoting, lowercased, with the
domain in its ASCII (IDNA) form: `A(x)@Bücher.example` and `"a"@xn--bcher-kva.example` are both
`a@xn--bcher-kva.example`. A non-ASCII local part (`josé@…`) is kept: delivering it needs a server
that offers SMTPUTF8. Syntax, length limits, IDNA and Unicode rules are email-validator's.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from playbookd.errors import UserError

# The common case, already canonical once lowercased: plain ASCII atoms, a domain of plain labels
# and an alphabetic top level. The validator takes ~50 µs an address; this, a fraction of that on a
# sync of a million contacts. tests/model/test_addresses.py checks the validator agrees on it.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?=.{{4,253}}$)(?:{_LABEL}\.)+[a-z]{{2,63}}")


class AddressError(UserError):
    """Not a deliverable mailbox; the message says why."""


def _without_comments(text: str) -> str:
    """The text with RFC 5322 comments `(…)` removed; quoted strings are kept as they are."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if not depth:
                out.append(char)
        elif char == "\\":
            escaped = True
            if not depth:
                out.append(char)
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            quoted = char == '"'
            out.append(char)
    if depth:
        raise AddressError("a comment '(' is not closed")
    return "".join(out).strip()


def _plain(text: str) -> bool:
    return (text.isascii() and _PLAIN.fullmatch(text) is not None and "--" not in text.partition("@")[2]
            and text.rpartition(".")[2] not in SPECIAL_USE_DOMAIN_NAMES)


def canonical(raw: str) -> str:
    """The canonical form of `raw`, or AddressError saying why it is not a deliverable mailbox."""
    text = raw.strip()
    if _plain(text.lower()):
        return text.lower()
    if not text:
        raise AddressError("no address")
    if not text.isprintable():
        raise AddressError("it contains a line break or a control character")
    if "<" in text or ">" in text:
        raise AddressError("give the address alone, without a name or angle brackets")
    if "(" in text:
        text = _without_comments(text)
    try:
        valid = validate_email(text, check_deliverability=False, allow_smtputf8=True, allow_quoted_local=True,
                               allow_domain_literal=False, allow_display_name=False, allow_empty_local=False)
    except EmailNotValidError as exc:
        why = str(exc).rstrip(".")
        raise AddressError(why[:1].lower() + why[1:]) from None
    if valid.local_part.startswith('"'):
        # RFC 5321 allows `"a b"@…`, but mailbox providers do not hand such addresses out and many
        # servers refuse them: better a row problem now than a bounce later.
        raise AddressError("a quoted local part with spaces or special characters is not deliverable")
    return f"{valid.local_part.lower()}@{valid.ascii_domain.lower()}"


def canonical_or_none(raw: str) -> str | None:
    try:
        return canonical(raw)
    except AddressError:
        return None


@lru_cache(maxsize=4096)  # asked of each recipient two to three times as its email is planned and signed
def lookup_form(raw: str) -> str:
    """How to look `raw` up in the store: canonical when it can be made so, else as typed, lowercased
    (an address stored before addresses were normalised, or one that no longer validates)."""
    return canonical_or_none(raw) or raw.strip().lower()


def needs_smtputf8(address: str) -> bool:
    """A canonical address with a non-ASCII local part (its domain is ASCII already)."""
    return not address.isascii()
