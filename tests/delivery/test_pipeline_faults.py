"""The pipelined send phase against servers that drip their replies, answer what was not asked, or are
closed while a message is in flight: each reply has one deadline, an unasked reply ends the connection,
and QUIT waits for the send in flight."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest
from smtp_server import SmtpServer, smtp_server_both_ways  # noqa: F401  (the fixture runs both ways here)

from playbookd.config.delivery import Smtp
from playbookd.delivery.message import Outgoing, make_message_id, wire
from playbookd.delivery.pipeline import Garbled, Replies
from playbookd.delivery.transports import PermanentFailure, SmtpTransport, TemporaryFailure, UncertainDelivery

TIMEOUT = 0.5
STEP = 0.1  # seconds between two dripped bytes: well under TIMEOUT, so only a per-reply deadline ends the wait
DRIP_MAX = 60  # bytes a dripping server sends at most (6 s); a client that keeps to its deadline leaves after ~5
SLOW = b"250-slow\r\n"


def outgoing(to: str) -> Outgoing:
    return Outgoing(make_message_id(to, "acme.example"), "success@acme.example", to, "Your checklist",
                    "<p>Hi</p>", "Hi Ana", "http://127.0.0.1:8025/unsubscribe/tok", None, {})


@dataclass
class Script:
    """A loopback server offering PIPELINING that answers each command in turn. `drip` names the command
    whose reply comes one byte every STEP; `refuse` answers RCPT with 550; `after_body` maps a connection's
    index to bytes written after its first body's reply, unasked."""

    drip: bytes = b""
    refuse: bool = False
    after_body: dict[int, bytes] = field(default_factory=dict)
    after_354: dict[int, bytes] = field(default_factory=dict)  # likewise, right after a connection's first 354
    dripped: list[int] = field(default_factory=list)  # bytes dripped on each connection before the client left
    bodies: list[int] = field(default_factory=list)  # the connection each body arrived on

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = len(self.dripped)
        self.dripped.append(0)
        writer.write(b"220 scripted ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-scripted\r\n250 PIPELINING\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == self.drip:
                    await self._drip(reader, writer, conn)
                    return
                if verb == b"DATA" and self.refuse:
                    writer.write(b"554 5.5.1 no valid recipients\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n" + self.after_354.pop(conn, b""))
                    await reader.readuntil(b"\r\n.\r\n")
                    self.bodies.append(conn)
                    writer.write(b"250 queued\r\n" + self.after_body.pop(conn, b""))
                elif verb == b"RCPT" and self.refuse:
                    writer.write(b"550 5.1.1 no such user\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                else:
                    writer.write(b"250 ok\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int) -> None:
        gone = asyncio.ensure_future(reader.read())  # ends when the client closes: it gave up waiting
        for i in range(DRIP_MAX):
            if gone.done():
                break
            writer.write(SLOW[i % len(SLOW):i % len(SLOW) + 1])
            self.dripped[conn] += 1
            await asyncio.sleep(STEP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone, 5)  # bounded: stay open until the client leaves


def outcome(exc: Exception) -> str:
    return next(c.__name__ for c in (UncertainDelivery, PermanentFailure, TemporaryFailure) if isinstance(exc, c))


def run(script: Script, *recipients: str, pause: float = 0) -> list[str]:
    async def go() -> list[str]:
        server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
        t = SmtpTransport(Smtp(host="127.0.0.1", port=server.sockets[0].getsockname()[1], timeout=TIMEOUT))
        said = []
        try:
            for to in recipients:
                try:
                    await t.send(wire(outgoing(to)))
                    said.append("sent")
                except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
                    said.append(f"{outcome(exc)}: {exc}")
                await asyncio.sleep(pause)  # the connection idles, as between ticks
        finally:
            await t.close()
            server.close()
            await asyncio.sleep(2 * STEP)  # a dripping handler sees the client gone and ends
        return said

    return asyncio.run(go())


def test_a_dripped_envelope_reply_times_out_within_one_deadline() -> None:
    script = Script(drip=b"MAIL")
    said = run(script, "a@customer.example")
    assert said == [f"TemporaryFailure: MAIL: no reply within {TIMEOUT:g} s"], said
    # a wait restarted by each byte would take all DRIP_MAX; one deadline leaves after TIMEOUT / STEP
    assert script.dripped and max(script.dripped) < DRIP_MAX // 2, script.dripped


def test_a_dripped_rset_reply_times_out_within_one_deadline() -> None:
    script = Script(drip=b"RSET", refuse=True)
    said = run(script, "gone@customer.example")
    assert said == ["PermanentFailure: RCPT: 550 5.1.1 no such user"], said
    assert len(script.dripped) == 1 and 0 < script.dripped[0] < DRIP_MAX // 2, script.dripped


def test_a_dripped_quit_reply_times_out_within_one_deadline() -> None:
    script = Script(drip=b"QUIT")
    assert run(script, "a@customer.example") == ["sent"]
    assert len(script.dripped) == 1 and 0 < script.dripped[0] < DRIP_MAX // 2, script.dripped


@pytest.mark.parametrize("unasked", [b"250 stale\r\n354 stale\r\n", b"421 4.4.2 idle too long\r\n"])
def test_a_reply_nobody_asked_for_closes_the_connection_and_judges_no_message(unasked: bytes) -> None:
    script = Script(after_body={0: unasked})
    said = run(script, "a@customer.example", "b@customer.example", pause=0.2)
    assert said == ["sent", "sent"], said  # the second is not refused by the first's leftovers
    assert script.bodies == [0, 1]  # the second went out on a fresh connection


def test_a_reply_nobody_asked_for_after_354_is_a_retry_not_an_unknown() -> None:
    """The fault closes the connection before any byte of the body is written: the server cannot have
    taken the message, so it is retried, not left `unknown` for a person to decide."""
    script = Script(after_354={0: b"250 extra\r\n"})
    said = run(script, "a@customer.example", "b@customer.example")
    assert said[0].startswith("TemporaryFailure: DATA: a reply nobody asked for"), said
    assert said[0].endswith("(before the message was sent)") and said[1:] == ["sent"], said
    assert script.bodies == [1]


def test_replies_beyond_those_asked_for_are_not_queued() -> None:
    faults = []
    replies = Replies(on_fault=lambda: faults.append(1))
    replies.expected = 1
    replies.data_received(b"250 asked\r\n250 not asked\r\n354 nor this\r\n")
    assert list(replies.ready) == [(250, "asked")]
    assert isinstance(replies.fault, Garbled) and "nobody asked for" in str(replies.fault)
    assert faults == [1]  # the connection is closed at once


def test_nothing_is_buffered_after_a_fault() -> None:
    replies = Replies()
    replies.expected = 1
    replies.data_received(b"HELLO? not smtp\r\n")
    for _ in range(50):
        replies.data_received(b"x" * 10_000)
    assert isinstance(replies.fault, Garbled) and len(replies.buffer) == 0 and not replies.ready


def test_close_waits_for_the_message_in_flight() -> None:
    with SmtpServer(pipelining=True) as server:
        server.recorder.data_delay = 0.5  # the body's reply is held while close() is called

        async def go() -> str:
            t = SmtpTransport(Smtp(host="127.0.0.1", port=server.port, timeout=3))
            sending = asyncio.create_task(t.send(wire(outgoing("a@customer.example"))))
            for _ in range(500):  # bounded wait until the body is in
                if server.recorder.in_data:
                    break
                await asyncio.sleep(0.01)
            await t.close()  # its QUIT must not take the reply the send waits for
            try:
                await sending
                return "sent"
            except (TemporaryFailure, PermanentFailure, UncertainDelivery) as exc:
                return f"{outcome(exc)}: {exc}"

        assert asyncio.run(go()) == "sent"
        assert [r.recipients for r in server.received] == [["a@customer.example"]]
        assert server.recorder.connections == 1


def test_the_two_way_fixture_takes_both_paths(smtp_server: SmtpServer, request: pytest.FixtureRequest) -> None:
    async def go() -> bool:
        t = SmtpTransport(Smtp(host="127.0.0.1", port=smtp_server.port, timeout=5))
        try:
            await t.send(wire(outgoing("a@customer.example")))
            return t.pipe is not None
        finally:
            await t.close()

    assert asyncio.run(go()) is ("pipelining" in request.node.callspec.id)
    assert len(smtp_server.received) == 1
