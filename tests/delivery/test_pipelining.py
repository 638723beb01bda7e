"""The pipelined send phase (RFC 2920) against real servers: aiosmtpd announcing PIPELINING, Postfix's
smtp-sink (which announces it unless told to refuse), and a loopback server that answers with garbage."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from smtp_server import SmtpServer, free_port

from playbookd.config.delivery import Smtp
from playbookd.delivery.message import Outgoing, make_message_id, wire
from playbookd.delivery.pipeline import MAX_LINE
from playbookd.delivery.transports import PermanentFailure, SmtpTransport, TemporaryFailure, UncertainDelivery

URL = "http://127.0.0.1:8025/unsubscribe/tok"
Outcome = str  # "sent" or the name of the exception


def outgoing(to: str, text: str = "Hi Ana") -> Outgoing:
    return Outgoing(make_message_id(to, "acme.example"), "success@acme.example", to, "Your checklist",
                    "<p>Hi</p>", text, URL, None, {})


def transport(port: int, timeout: float = 5) -> SmtpTransport:
    return SmtpTransport(Smtp(host="127.0.0.1", port=port, timeout=timeout))


def outcomes(t: SmtpTransport, *recipients: str, check: Callable[[], None] | None = None) -> list[Outcome]:
    async def go() -> list[Outcome]:
        said = []
        try:
            for to in recipients:
                try:
                    await t.send(wire(outgoing(to, "Hi\r\n.leading dot\r\n..two")))
                    said.append("sent")
                except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
                    said.append(f"{type(exc).__name__}: {exc}")
                if check is not None:
                    check()
        finally:
            await t.close()
        return said

    return asyncio.run(go())


@pytest.fixture
def piped() -> Iterator[SmtpServer]:
    with SmtpServer(pipelining=True) as server:
        yield server


def test_pipelined_messages_arrive_whole_over_one_connection(piped: SmtpServer) -> None:
    t = transport(piped.port)
    assert outcomes(t, "a@customer.example", "b@customer.example", check=lambda: _assert_piped(t)) == ["sent"] * 2
    assert [r.recipients for r in piped.received] == [["a@customer.example"], ["b@customer.example"]]
    assert piped.recorder.connections == 1
    sent = wire(outgoing("a@customer.example", "Hi\r\n.leading dot\r\n..two")).data
    assert piped.received[0].raw.rstrip(b"\r\n") == sent.rstrip(b"\r\n")  # dots doubled on the wire, undone there
    assert piped.received[0].message.get_body(("plain",)).get_content().splitlines()[1:3] == [".leading dot", "..two"]


def _assert_piped(t: SmtpTransport) -> None:
    assert t.pipe is not None and t.client is None, "the send phase did not take the connection over"


def test_without_pipelining_the_command_by_command_path_is_kept(smtp_server: SmtpServer) -> None:
    t = transport(smtp_server.port)
    assert outcomes(t, "a@customer.example", check=lambda: assertion(t.pipe is None and t.client is not None)) == [
        "sent"]
    assert len(smtp_server.received) == 1


def assertion(ok: bool) -> None:
    assert ok


def test_5xx_on_rcpt_fails_that_message_and_the_next_goes_on_the_same_connection(piped: SmtpServer) -> None:
    piped.recorder.refuse["gone@customer.example"] = "550 5.1.1 No such user"
    said = outcomes(transport(piped.port), "gone@customer.example", "ana@customer.example")
    assert said[0].startswith("PermanentFailure: RCPT: 550 5.1.1 No such user"), said
    assert said[1] == "sent"
    assert [r.recipients for r in piped.received] == [["ana@customer.example"]]
    assert piped.recorder.connections == 1


def test_4xx_on_data_is_temporary_and_a_soft_bounce(piped: SmtpServer) -> None:
    piped.recorder.data_reply = "452 4.2.2 Mailbox full"
    t = transport(piped.port)

    async def go() -> TemporaryFailure:
        try:
            with pytest.raises(TemporaryFailure) as caught:
                await t.send(wire(outgoing("ana@customer.example")))
            return caught.value
        finally:
            await t.close()

    failure = asyncio.run(go())
    assert failure.soft_bounce and str(failure) == "DATA: 452 4.2.2 Mailbox full"


def test_a_connection_dropped_after_the_body_is_uncertain_and_the_next_message_reconnects(piped: SmtpServer) -> None:
    piped.recorder.drop_data = True
    t = transport(piped.port)

    def heal() -> None:
        piped.recorder.drop_data = False

    said = outcomes(t, "a@customer.example", "b@customer.example", check=heal)
    assert said[0].startswith("UncertainDelivery"), said
    assert said[1] == "sent"
    assert piped.recorder.connections == 2


# --- Postfix smtp-sink -------------------------------------------------------------------------------

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
needs_sink = pytest.mark.skipif(not os.path.exists(SINK), reason="Postfix smtp-sink is not installed")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Callable[..., int]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> int:
        port = free_port()
        as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
        started.append(subprocess.Popen([SINK, *as_root, *options, f"127.0.0.1:{port}", "10"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):  # bounded wait for its listener
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise AssertionError("smtp-sink did not start")

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@needs_sink
def test_smtp_sink_takes_pipelined_messages(sink: Callable[..., int]) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as dumps:  # outside pytest's private tree: smtp-sink is nobody
        os.chmod(dumps, 0o777)
        t = transport(sink("-d", f"{dumps}/%H%M%S."))
        said = outcomes(t, "a@customer.example", "b@customer.example", check=lambda: _assert_piped(t))
        bodies = [p.read_bytes() for p in Path(dumps).iterdir()]
    assert said == ["sent"] * 2
    assert sorted(b.split(b"X-Rcpt-Args: ")[1].split(b"\n")[0] for b in bodies) == [
        b"<a@customer.example>", b"<b@customer.example>"]
    assert all(b"\n.leading dot" in b and b"\n..two" in b for b in bodies)  # the dots came back undoubled


@needs_sink
def test_smtp_sink_dropping_the_connection_after_data_fails_nothing_as_sent(sink: Callable[..., int]) -> None:
    said = outcomes(transport(sink("-q", "DATA")), "a@customer.example")
    assert said[0].startswith("TemporaryFailure"), said  # the body never went: safe to retry


@needs_sink
def test_smtp_sink_dropping_the_connection_after_the_body_is_uncertain(sink: Callable[..., int]) -> None:
    said = outcomes(transport(sink("-q", ".")), "a@customer.example")
    assert said[0].startswith("UncertainDelivery"), said


@needs_sink
def test_smtp_sink_421_on_rcpt_is_temporary(sink: Callable[..., int]) -> None:
    said = outcomes(transport(sink("-Q", "RCPT")), "a@customer.example", "b@customer.example")
    assert all(s.startswith("TemporaryFailure: RCPT: 421") for s in said), said


@needs_sink
def test_smtp_sink_refusing_rcpt_keeps_the_command_by_command_path(sink: Callable[..., int]) -> None:
    # -f implies -p: no PIPELINING announced, so aiosmtplib's exchange carries the refusal
    t = transport(sink("-f", "RCPT", "-B", "550 5.1.1 No such user"))
    said = outcomes(t, "gone@customer.example", check=lambda: assertion(t.pipe is None))
    assert said == ["PermanentFailure: RCPT: 550 5.1.1 No such user"], said


@needs_sink
def test_smtp_sink_4xx_on_data_is_temporary(sink: Callable[..., int]) -> None:
    said = outcomes(transport(sink("-r", "DATA", "-b", "451 4.3.0 try again")), "a@customer.example")
    assert said == ["TemporaryFailure: DATA: 451 4.3.0 try again"], said


# --- a server that answers with anything ---------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def hostile(script: Script, timeout: float = 1) -> list[Outcome]:
    """One message through a loopback server that greets, offers PIPELINING, then runs `script`."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hostile ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-hostile\r\n250 PIPELINING\r\n")
        try:
            await script(reader, writer)
        finally:
            writer.close()

    async def go() -> list[Outcome]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t = transport(port, timeout)
        try:
            await t.send(wire(outgoing("a@customer.example")))
            return ["sent"]
        except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
            return [f"{type(exc).__name__}: {exc}"]
        finally:
            await t.close()
            server.close()

    return asyncio.run(go())


def replying(*replies: bytes, after_body: bytes | None = None) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):  # MAIL, RCPT, DATA
            await reader.readline()
        writer.write(b"".join(replies))
        if after_body is not None:
            await reader.readuntil(b"\r\n.\r\n")
            writer.write(after_body)
        await asyncio.sleep(3)  # then silence, until the client gives up or leaves
    return script


def test_a_reply_that_is_not_smtp_fails_the_message_with_the_text() -> None:
    said = hostile(replying(b"250 ok\r\nHELLO? this is not smtp\r\n"))
    assert said[0].startswith("PermanentFailure: RCPT: not an SMTP reply") and "HELLO? this is not smtp" in said[0]


def test_an_endless_reply_line_is_cut_off() -> None:
    said = hostile(replying(b"250 " + b"x" * (MAX_LINE * 4)))
    assert said[0].startswith("PermanentFailure: MAIL: a reply line longer than"), said


def test_an_endless_multiline_reply_is_cut_off() -> None:
    said = hostile(replying(b"250-more\r\n" * 1000))
    assert said[0].startswith("PermanentFailure: MAIL: a reply of more than"), said


def test_no_reply_to_the_envelope_in_time_is_temporary() -> None:
    said = hostile(replying(b"250 ok\r\n"), timeout=0.5)
    assert said[0].startswith("TemporaryFailure: RCPT: no reply within"), said


def test_a_garbled_or_missing_reply_after_the_body_is_uncertain() -> None:
    envelope = b"250 ok\r\n250 ok\r\n354 go\r\n"
    garbled = hostile(replying(envelope, after_body=b"2x0 what\r\n"))
    assert garbled[0].startswith("UncertainDelivery") and "2x0 what" in garbled[0], garbled
    silent = hostile(replying(envelope, after_body=b""), timeout=0.5)
    assert silent[0].startswith("UncertainDelivery: after the message was sent: no reply within"), silent


def test_a_server_that_opens_data_for_a_refused_recipient_gets_no_message() -> None:
    seen = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            await reader.readline()
        writer.write(b"250 ok\r\n550 5.1.1 no such user\r\n354 go ahead anyway\r\n")
        line = await reader.readline()
        seen.append(line)
        writer.write(b"554 no valid recipients\r\n" if line == b".\r\n" else b"250 queued " + line)
        await asyncio.sleep(3)

    said = hostile(script)
    assert said == ["PermanentFailure: RCPT: 550 5.1.1 no such user"], said
    assert seen == [b".\r\n"]  # DATA ended at once, empty
