"""Building the MIME message of an outbox row: headers, one-click unsubscribe, text and HTML parts.

Written by the rules: headers folded at 76 characters, so no RFC 2047 encoded word is longer
than 75; both parts quoted-printable, so no body line is longer than 76 (RFC 2045) and the
message is 7-bit clean. A message to or from a non-ASCII local part is written with its headers
in UTF-8 (RFC 6532), never with encoded words inside an address, and needs SMTPUTF8 to be sent.

Delivery writes the bytes itself (`wire`): building an EmailMessage and flattening it cost about
2.5 ms a message, most of it parsing headers we had just written. The same rules apply; what the
fast path does not cover (an address that is not a plain dot-atom, a structured extra header) goes
through the email library, cached, so the output is the library's own.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from playbookd.model.addresses import needs_smtputf8
from playbookd.model.headers import one_line

FOLD_AT = 76  # an encoded word on a folded line then has at most 75 characters (RFC 2047)
_EW_CHROME = len("=?utf-8?b??=")


def _encoded_words(text: str, first: int) -> list[str]:
    """`text` as base64 encoded words, each a whole number of characters, the first at most `first`
    long and the others at most FOLD_AT - 1. Every space is inside a word, so none is lost between
    two of them (as Python 3.11's own folding loses some)."""
    words, chunk, size, budget = [], "", 0, first
    for char in text:
        width = len(char.encode())
        if chunk and _EW_CHROME + 4 * -(-(size + width) // 3) > budget:
            words.append(chunk)
            chunk, size, budget = "", 0, FOLD_AT - 1
        chunk, size = chunk + char, size + width
    words.append(chunk)
    return ["=?utf-8?b?" + base64.b64encode(w.encode()).decode() + "?=" for w in words]


def _fold_unstructured(name: str, text: str, utf8: bool, linesep: str) -> str:
    """Subject and our X- headers: wrapped at spaces when they can be sent as they are (ASCII, or
    UTF-8 under SMTPUTF8), else encoded words; a single long token (a URL) stays whole."""
    # text that looks like an encoded word is encoded itself, or a reader would decode it
    if (text.isascii() or utf8) and "=?" not in text:
        lines = [f"{name}:"]
        for word in text.split():
            if len(lines[-1]) + 1 + len(word) > FOLD_AT and lines[-1] != f"{name}:":
                lines.append("")
            lines[-1] += " " + word
        return (linesep).join(lines) + linesep
    return f"{name}: " + (linesep + " ").join(_encoded_words(text, FOLD_AT - len(name) - 2)) + linesep


class _Policy(EmailPolicy):
    """policy.SMTP, folding by the rules at FOLD_AT (structured headers by the library)."""

    def fold(self, name: str, value: Any) -> str:
        if isinstance(value, UnstructuredHeader):
            return _fold_unstructured(name, str(value), self.utf8, self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, UnstructuredHeader):
            return self.fold(name, value).encode("utf-8" if self.utf8 else "ascii")
        return super().fold_binary(name, value)


POLICY = _Policy(linesep="\r\n", max_line_length=FOLD_AT)  # policy.SMTP, folded by the rules
UTF8 = POLICY.clone(utf8=True)


@dataclass(frozen=True)
class Outgoing:
    message_id: str
    from_addr: str
    to_addr: str
    subject: str
    html: str
    text: str
    unsubscribe_url: str | None
    reply_to: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def make_message_id(key: str, domain: str, installation: bytes = b"") -> str:
    """Derived from the outbox key, so a resend after a crash carries the same Message-ID, and from
    the installation's secret, so two installations never give different emails the same one."""
    digest = hashlib.sha256(installation + b"\x1f" + key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_message(out: Outgoing, now: datetime | None = None) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["Message-ID"] = out.message_id
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["From"] = out.from_addr
    message["To"] = out.to_addr
    message["Subject"] = one_line(out.subject)  # a row the store holds however it got there
    if out.reply_to:
        message["Reply-To"] = out.reply_to
    if out.unsubscribe_url:
        # RFC 8058 one-click: mailbox providers show an unsubscribe button and POST to the URL.
        message["List-Unsubscribe"] = f"<{out.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in out.extra_headers.items():
        message[name] = one_line(value)
    message.set_content(out.text, cte="quoted-printable")
    message.add_alternative(out.html, subtype="html", cte="quoted-printable")
    return message


def envelope(message: EmailMessage) -> tuple[str, str]:
    """(sender, recipient) addresses of the From and To headers."""
    return message["From"].addresses[0].addr_spec, message["To"].addresses[0].addr_spec


def needs_utf8(message: EmailMessage) -> bool:
    """The sender or the recipient has a non-ASCII local part: the message needs SMTPUTF8."""
    return any(needs_smtputf8(address) for address in envelope(message))


def as_bytes(message: EmailMessage, utf8: bool) -> bytes:
    """The message on the wire: with UTF-8 headers for SMTPUTF8, else 7-bit with encoded words."""
    return message.as_bytes(policy=UTF8 if utf8 else POLICY)


# --- the wire format, written directly -----------------------------------------------------------

CRLF = b"\r\n"
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                       r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_PLAIN_ID = re.compile(r"<[!-;=?-~]+>")  # printable ASCII without < or > between the brackets
_STRUCTURED = frozenset(name for name, kind in HeaderRegistry().registry.items()
                        if not issubclass(kind, UnstructuredHeader))


@dataclass(frozen=True)
class Wire:
    """A message as it goes out: the envelope, whether it needs SMTPUTF8, and its bytes."""
    message_id: str
    sender: str
    recipient: str
    utf8: bool
    data: bytes


@functools.lru_cache(maxsize=4096)
def _library_line(name: str, value: str, utf8: bool) -> bytes:
    """One header as the email library folds it (structured headers, unusual addresses)."""
    message = EmailMessage(policy=POLICY)
    message[name] = value
    return message.as_bytes(policy=UTF8 if utf8 else POLICY)[:-2]  # the blank line that ends the head


@functools.lru_cache(maxsize=4096)
def _library_address(value: str) -> str:
    message = EmailMessage(policy=POLICY)
    message["To"] = value
    return str(message["To"].addresses[0].addr_spec)


def _addr_spec(value: str) -> str:
    """The address of a From, To or Reply-To value; ValueError when it has none usable."""
    if _DOT_ATOM.fullmatch(value):
        return value
    try:
        address = _library_address(value)
    except (AttributeError, IndexError, ValueError) as exc:
        raise ValueError(f"no usable address in {value!r} ({exc})") from exc
    if "@" not in address:
        raise ValueError(f"no usable address in {value!r}")
    return address


def _line(name: str, value: str, utf8: bool) -> bytes:
    if name.lower() in _STRUCTURED:
        if (name == "To" and _DOT_ATOM.fullmatch(value)) or (name == "Message-ID" and _PLAIN_ID.fullmatch(value)):
            return f"{name}: {value}\r\n".encode()  # what the library writes for these, without parsing them
        return _library_line(name, value, utf8)
    return _fold_unstructured(name, one_line(value), utf8, "\r\n").encode("utf-8" if utf8 else "ascii")


def _quoted_printable(text: str) -> bytes:
    """A part's body, every line break CRLF, quoted-printable in lines of at most 76 (binascii's C
    encoder, as the library's pure-Python one but some hundred times faster)."""
    return binascii.b2a_qp(CRLF.join(text.encode().splitlines()) + CRLF, istext=True)


def _part(subtype: str, text: str) -> bytes:
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode() + _quoted_printable(text)


def wire(out: Outgoing, now: datetime | None = None) -> Wire:
    """`out` on the wire, as build_message then as_bytes would write it; ValueError without usable addresses."""
    sender, recipient = _addr_spec(out.from_addr), _addr_spec(out.to_addr)
    utf8 = needs_smtputf8(sender) or needs_smtputf8(recipient)
    headers = [("Message-ID", out.message_id), ("Date", format_datetime(now or datetime.now(UTC))),
               ("From", out.from_addr), ("To", out.to_addr), ("Subject", out.subject)]
    if out.reply_to:
        headers.append(("Reply-To", out.reply_to))
    if out.unsubscribe_url:
        # RFC 8058 one-click: mailbox providers show an unsubscribe button and POST to the URL.
        headers += [("List-Unsubscribe", f"<{out.unsubscribe_url}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    headers += [(name, one_line(value)) for name, value in out.extra_headers.items()]
    # "=_" never occurs in quoted-printable text ("=" is followed by hex or a line break), so the
    # boundary cannot appear in either part.
    boundary = "=_" + hashlib.sha256(out.message_id.encode()).hexdigest()[:24]
    head = b"".join(_line(name, value, utf8) for name, value in headers)
    data = b"".join((head, b"MIME-Version: 1.0\r\n",
                     f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode(),
                     f"--{boundary}\r\n".encode(), _part("plain", out.text),
                     f"\r\n--{boundary}\r\n".encode(), _part("html", out.html),
                     f"\r\n--{boundary}--\r\n".encode()))
    return Wire(out.message_id, sender, recipient, utf8, data)


def wire_of(message: EmailMessage) -> Wire:
    """A message built with the email library (send-test, older callers), on the wire."""
    sender, recipient = envelope(message)
    utf8 = needs_utf8(message)
    return Wire(str(message["Message-ID"]), sender, recipient, utf8, as_bytes(message, utf8))
