"""The mailer against a real SMTP server on loopback, and the file transport on a real directory."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from smtp_server import SmtpServer, free_port

from playbookd.config.delivery import Delivery, Smtp
from playbookd.delivery.message import Outgoing, build_message, make_message_id
from playbookd.delivery.transports import (
    FileTransport,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    UncertainDelivery,
    make_transport,
)

URL = "http://127.0.0.1:8025/unsubscribe/" + "t" * 90


def outgoing(to: str = "ana@customer.example", key: str = "1:0:7") -> Outgoing:
    return Outgoing(make_message_id(key, "acme.example"), "Acme Success <success@acme.example>", to,
                    "Your week one checklist", "<p>Hi Ana</p>", "Hi Ana", URL, "csm@acme.example",
                    {"X-Playbook": "onboarding-week1"})


def transport(server: SmtpServer, **settings: object) -> SmtpTransport:
    return SmtpTransport(Smtp(host="127.0.0.1", port=server.port, timeout=5, **settings))  # type: ignore[arg-type]


def send_all(t: SmtpTransport, *messages: Outgoing) -> None:
    async def go() -> None:
        try:
            for out in messages:
                await t.send(build_message(out))
        finally:
            await t.close()

    asyncio.run(go())


def test_message_id_is_stable_per_key_and_differs_between_keys() -> None:
    assert make_message_id("1:0:7", "acme.example") == make_message_id("1:0:7", "acme.example")
    assert make_message_id("1:0:7", "acme.example") != make_message_id("1:1:7", "acme.example")
    assert make_message_id("k", "acme.example").endswith("@acme.example>")
    # another installation (another secret) never reuses this one's Message-IDs
    assert make_message_id("1:0:7", "acme.example", b"one") != make_message_id("1:0:7", "acme.example", b"two")
    assert make_message_id("1:0:7", "acme.example", b"one") == make_message_id("1:0:7", "acme.example", b"one")


def test_message_has_both_parts_and_one_click_unsubscribe() -> None:
    message = build_message(outgoing())
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["List-Unsubscribe"] == f"<{URL}>"  # long URL stays plain, not RFC 2047-encoded
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Reply-To"] == "csm@acme.example"
    assert message["X-Playbook"] == "onboarding-week1"


def test_smtp_delivers_over_one_reused_connection(smtp_server: SmtpServer) -> None:
    send_all(transport(smtp_server), outgoing("a@customer.example", "a"), outgoing("b@customer.example", "b"))
    assert [r.recipients for r in smtp_server.received] == [["a@customer.example"], ["b@customer.example"]]
    assert smtp_server.received[0].sender == "success@acme.example"
    assert smtp_server.received[0].message["Message-ID"] == make_message_id("a", "acme.example")
    assert smtp_server.recorder.connections == 1


def test_unknown_mailbox_is_permanent_and_marked_unknown_user(smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["gone@customer.example"] = "550 5.1.1 No such user"
    with pytest.raises(PermanentFailure) as caught:
        send_all(transport(smtp_server), outgoing("gone@customer.example"))
    assert caught.value.unknown_user
    assert "RCPT" in str(caught.value) and "550" in str(caught.value)


def test_policy_rejection_is_permanent_but_not_unknown_user(smtp_server: SmtpServer) -> None:
    smtp_server.recorder.data_reply = "554 5.7.1 Message rejected as spam"
    with pytest.raises(PermanentFailure) as caught:
        send_all(transport(smtp_server), outgoing())
    assert not caught.value.unknown_user


def test_greylisting_is_temporary(smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["ana@customer.example"] = "451 4.7.1 Greylisted, try again later"
    with pytest.raises(TemporaryFailure):
        send_all(transport(smtp_server), outgoing())


def test_failed_transaction_leaves_connection_usable(smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["gone@customer.example"] = "550 5.1.1 No such user"
    t = transport(smtp_server)

    async def go() -> list[str]:
        outcomes = []
        for to in ("gone@customer.example", "ana@customer.example"):
            try:
                await t.send(build_message(outgoing(to, to)))
                outcomes.append("sent")
            except PermanentFailure:
                outcomes.append("refused")
        await t.close()
        return outcomes

    assert asyncio.run(go()) == ["refused", "sent"]
    assert [r.recipients for r in smtp_server.received] == [["ana@customer.example"]]


def test_connection_lost_after_body_is_uncertain(smtp_server: SmtpServer) -> None:
    smtp_server.recorder.drop_data = True
    with pytest.raises(UncertainDelivery):
        send_all(transport(smtp_server), outgoing())


def test_nobody_listening_is_temporary() -> None:
    t = SmtpTransport(Smtp(host="127.0.0.1", port=free_port(), timeout=2))
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        send_all(t, outgoing())


def test_file_transport_writes_one_file_per_message_id(tmp_path: Path) -> None:
    t = FileTransport(tmp_path / "outbox")
    message = build_message(outgoing())

    async def go() -> None:
        await t.send(message)
        await t.send(message)  # a retry after a crash rewrites, never duplicates

    asyncio.run(go())
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [t.path_for(message).name]
    parsed = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["To"] == "ana@customer.example"
    assert parsed.get_body(("plain",)).get_content().strip() == "Hi Ana"  # type: ignore[union-attr]


def test_file_transport_unwritable_directory_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TemporaryFailure, match="cannot write"):
        asyncio.run(FileTransport(blocker / "outbox").send(build_message(outgoing())))


def test_make_transport_follows_config(tmp_path: Path) -> None:
    assert isinstance(make_transport(Delivery(transport="smtp")), SmtpTransport)
    assert isinstance(make_transport(Delivery(directory=tmp_path)), FileTransport)
