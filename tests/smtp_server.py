"""A real SMTP server on loopback (aiosmtpd) that records what it receives and can misbehave on cue."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes = b""  # the bytes as they arrived after DATA
    mail_options: list[str] = field(default_factory=list)


@dataclass
class Recorder:
    """aiosmtpd handler. `refuse` maps a recipient to the RCPT reply; `data_reply` overrides the DATA reply;
    `drop_data` closes the connection after the body arrived, before replying (the uncertain case);
    `data_delay` holds the reply, so a client can be killed while its message is in flight; `refuse_all`
    is the RCPT reply to every recipient (a relay that refuses us) until set back to None."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_all: str | None = None
    data_reply: str | None = None
    drop_data: bool = False
    data_delay: float = 0.0  # seconds the server holds its DATA reply, after the body arrived
    in_data: int = 0  # DATA commands whose body arrived, counted before the delay
    connections: int = 0
    in_flight: int = 0  # DATA commands being answered right now, over all connections
    peak: int = 0  # the most ever answered at once
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_received: Callable[[], object] | None = None  # called as each message is recorded, before the reply
    pipelining: bool = False  # announce PIPELINING (RFC 2920); aiosmtpd reads commands in order either way

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_all:
            return self.refuse_all
        if address.lower() in self.refuse:
            return self.refuse[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_data += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.data_delay:
                await asyncio.sleep(self.data_delay)
        finally:
            self.in_flight -= 1
        if self.drop_data:
            server.transport.close()
            return "250 OK"  # never reaches the client
        if self.data_reply:
            return self.data_reply
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,  # type: ignore[arg-type]
                                          bytes(envelope.original_content), list(envelope.mail_options)))
        if self.on_received is not None:
            self.on_received()
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    def __init__(self, smtputf8: bool = False, pipelining: bool = False) -> None:
        self.recorder = Recorder(pipelining=pipelining)
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


@pytest.fixture(name="smtp_server", params=[False, True], ids=["stepwise", "pipelining"])
def smtp_server_both_ways(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """conftest's `smtp_server`, run once without PIPELINING (aiosmtplib's command-by-command exchange) and
    once with it (the pipelined send phase, as Postfix gets). Imported into a test module, it takes the
    place of conftest's fixture there: `from smtp_server import smtp_server_both_ways  # noqa: F401`."""
    with SmtpServer(pipelining=request.param) as server:
        yield server
