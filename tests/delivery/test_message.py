"""The MIME message by the rules, checked on the real bytes: as the file transport writes them and
as a real SMTP server receives them (with and without SMTPUTF8)."""

from __future__ import annotations

import asyncio
import re
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from smtp_server import SmtpServer

from playbookd.config.delivery import Smtp
from playbookd.delivery.message import Outgoing, build_message, make_message_id, wire
from playbookd.delivery.transports import FileTransport, PermanentFailure, SmtpTransport, Transport

URL = "http://127.0.0.1:8025/unsubscribe/" + "t" * 120
SUBJECT = "Größere Übersicht für Ångström & Søn — " * 5  # ~200 characters, nearly all needing encoding
TEXT = ("Grüße aus Köln, " * 40 + "\n") * 3 + "x" * 500 + "\n"  # lines of 640 and 500 characters
HTML = "<p>" + "Ünïcödé " * 400 + "</p>"  # one 3,200-character line
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def outgoing(to: str = "ana@customer.example", subject: str = SUBJECT, **headers: str) -> Outgoing:
    return Outgoing(make_message_id(to, "acme.example"), "Acme Success <success@acme.example>", to, subject,
                    HTML, TEXT, URL, None, headers)


WRITER = "wire"


@pytest.fixture(params=["wire", "email"], autouse=True)
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with delivery's own writer and with the email library's (send-test)."""
    monkeypatch.setattr(sys.modules[__name__], "WRITER", request.param)


def built(out: Outgoing) -> object:
    return wire(out) if WRITER == "wire" else build_message(out)


def send(transport: Transport, *messages: Outgoing) -> None:
    async def go() -> None:
        try:
            for out in messages:
                await transport.send(built(out))  # type: ignore[arg-type]
        finally:
            await transport.close()

    asyncio.run(go())


def smtp(server: SmtpServer) -> SmtpTransport:
    return SmtpTransport(Smtp(host="127.0.0.1", port=server.port, timeout=5))


def assert_by_the_rules(raw: bytes) -> None:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    words = ENCODED_WORD.findall(head)
    assert words, "the subject should be encoded"
    assert max(len(w) for w in words) <= 75, max(words, key=len)  # RFC 2047
    assert max(len(line) for line in body.split(b"\n")) <= 76  # RFC 2045 (quoted-printable)
    assert max(len(line) for line in head.split(b"\n")) <= 998  # RFC 5322
    assert body.isascii()  # 7-bit clean: every part quoted-printable
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == " ".join(SUBJECT.split())
    assert parsed["List-Unsubscribe"] == f"<{URL}>"  # one long token, left whole and readable
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT  # type: ignore[union-attr]
    assert parsed.get_body(("html",)).get_content().rstrip("\r\n") == HTML  # type: ignore[union-attr]


def test_file_transport_writes_encoded_words_of_75_and_lines_of_76(tmp_path: Path) -> None:
    send(FileTransport(tmp_path), outgoing())
    (written,) = tmp_path.glob("*.eml")
    assert_by_the_rules(written.read_bytes())


def test_an_smtp_server_receives_encoded_words_of_75_and_lines_of_76(smtp_server: SmtpServer) -> None:
    send(smtp(smtp_server), outgoing())
    (received,) = smtp_server.received
    assert_by_the_rules(received.raw)


@pytest.mark.parametrize("breaker", ["\r", "\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                                     "\x00", "\x9f"])
def test_a_line_break_or_control_from_data_in_any_header_is_a_space(smtp_server: SmtpServer, breaker: str) -> None:
    send(smtp(smtp_server), outgoing(subject=f"Harbor{breaker}Foods", **{"X-Account": f"ACC{breaker}1"}))
    (received,) = smtp_server.received
    assert received.message["Subject"] == "Harbor Foods"
    assert received.message["X-Account"] == "ACC 1"
    assert b"\r\nSubject: Harbor Foods\r\n" in received.raw and b"\r\nX-Account: ACC 1\r\n" in received.raw


def test_smtputf8_carries_a_non_ascii_mailbox_when_the_server_offers_it() -> None:
    with SmtpServer(smtputf8=True) as server:
        send(smtp(server), outgoing("josé@xn--exmple-cua.com"))
        (received,) = server.received
    assert received.recipients == ["josé@xn--exmple-cua.com"]
    assert "SMTPUTF8" in received.mail_options
    to_line = next(line for line in received.raw.split(b"\r\n") if line.startswith(b"To:"))
    assert to_line == "To: josé@xn--exmple-cua.com".encode()  # UTF-8 (RFC 6532), no encoded word
    assert received.message["To"] == "josé@xn--exmple-cua.com"


def test_without_smtputf8_a_non_ascii_mailbox_fails_alone_and_is_no_bounce(smtp_server: SmtpServer) -> None:
    transport = smtp(smtp_server)

    async def go() -> list[str]:
        outcomes = []
        for to in ("josé@xn--exmple-cua.com", "ana@customer.example"):
            try:
                await transport.send(built(outgoing(to)))  # type: ignore[arg-type]
                outcomes.append("sent")
            except PermanentFailure as exc:
                assert not exc.unknown_user and not exc.policy  # neither the recipient's fault nor a relay refusal
                outcomes.append(str(exc))
        await transport.close()
        return outcomes

    refused, sent = asyncio.run(go())
    assert "josé@xn--exmple-cua.com needs SMTPUTF8" in refused and "does not offer" in refused
    assert sent == "sent"
    assert [r.recipients for r in smtp_server.received] == [["ana@customer.example"]]
    assert smtp_server.recorder.connections == 1  # nothing was started on the wire for the refused one


def test_file_transport_writes_a_non_ascii_mailbox_in_utf8_not_as_an_encoded_word(tmp_path: Path) -> None:
    send(FileTransport(tmp_path), outgoing("josé@xn--exmple-cua.com"))
    (written,) = tmp_path.glob("*.eml")
    raw = written.read_bytes()
    assert "To: josé@xn--exmple-cua.com\r\n".encode() in raw
    assert message_from_bytes(raw, policy=policy.default)["To"] == "josé@xn--exmple-cua.com"


def test_a_message_without_a_usable_address_fails_permanently(tmp_path: Path) -> None:
    with pytest.raises((PermanentFailure, ValueError), match=r"message cannot be built|no usable address"):
        send(FileTransport(tmp_path), outgoing("not an address"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("to, sender, subject", [
    ("ana@customer.example", "Acme Success <success@acme.example>", SUBJECT),
    ('"ana maria"@customer.example', "Ünïcode Name <success@acme.example>", "plain subject"),
    ("josé@xn--exmple-cua.com", "success@acme.example", "=?utf-8?q?looks_encoded?= but is text"),
    ("ana@customer.example", '"Acme, Inc." <success@acme.example>', ""),
])
def test_delivery_writes_what_the_email_library_would(to: str, sender: str, subject: str) -> None:
    out = Outgoing(make_message_id(to, "acme.example"), sender, to, subject, HTML, TEXT, URL, "csm@acme.example",
                   {"X-Account": "ACC 1", "X-Playbook": "p" * 90})
    ours = message_from_bytes(wire(out).data, policy=policy.default)
    theirs = message_from_bytes(build_message(out).as_bytes(), policy=policy.default)
    names = ["Message-ID", "From", "To", *(["Subject"] if "=?" not in subject else []), "Reply-To",
             "List-Unsubscribe", "List-Unsubscribe-Post", "X-Account", "X-Playbook", "MIME-Version"]
    assert [str(ours[n]) for n in names] == [str(theirs[n]) for n in names]
    if "=?" in subject:  # the library decodes what looks like an encoded word; the subject is text
        assert str(ours["Subject"]) == subject
    for kind in ("plain", "html"):
        assert ours.get_body((kind,)).get_content() == theirs.get_body((kind,)).get_content()  # type: ignore[union-attr]
    assert wire(out).utf8 == (not to.isascii())
