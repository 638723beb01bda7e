"""A real SMTP server (aiosmtpd) that misbehaves at random, seeded: every class of reply a mail server
gives, disconnects before and after DATA, and stalls past the client's timeout. It records what it
said to each recipient and every message body it received, so a test can check what the client made
of it."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller
from smtp_server import free_port

REPLIES = ("451 4.7.1 Greylisted, try again later", "421 4.7.0 Too many connections, slow down",
           "452 4.2.2 Mailbox full", "550 5.1.1 User unknown", "550 5.2.1 Mailbox disabled",
           "550 5.7.1 Relaying denied", "554 5.7.1 Message rejected by policy")
ACTIONS = ("drop_before_data", "drop_after_data", "stall_before_data", "stall_after_data")
# the replies that say something about the recipient's mailbox, and may suppress it
HARD = ("5.1.1", "5.2.1")
SOFT = "4.2.2"


@dataclass
class Faults:
    seed: int
    stall: float  # seconds a stall lasts: longer than the client's timeout
    healthy: bool = False  # set to stop misbehaving
    pipelining: bool = False  # announce PIPELINING, so the client sends each envelope and DATA in one write
    said: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # recipient -> what it got
    received: list[str] = field(default_factory=list)  # Message-IDs whose body arrived, in order

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _pick(self) -> tuple[str, str]:
        """(fault, phase): about half the transactions go well."""
        if self.healthy or self.rng.random() < 0.45:
            return "ok", "DATA"
        fault = self.rng.choice(REPLIES + ACTIONS)
        if fault in ACTIONS:
            return fault, "RCPT" if fault.endswith("before_data") else "DATA"
        return fault, self.rng.choice(("RCPT", "DATA"))

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        fault, phase = self._pick()
        envelope.fault = (fault, phase)
        if phase == "RCPT":
            self.said[address.lower()].append(fault)
            return await self._misbehave(server, fault)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault, _ = envelope.fault
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        for address in envelope.rcpt_tos:
            self.said[address.lower()].append(fault)
        if fault in REPLIES:
            return fault
        self.received.append(str(message["Message-ID"]))  # the body is here: a server may deliver it now
        if fault == "ok":
            return "250 Message accepted for delivery"
        return await self._misbehave(server, fault)

    async def _misbehave(self, server: Any, fault: str) -> str:
        if fault.startswith("drop"):
            server.transport.close()
            return "250 OK"  # never reaches the client
        if fault.startswith("stall"):
            await asyncio.sleep(self.stall)
            return "250 OK"  # too late: the client gave up
        return fault


class FaultySmtpServer:
    def __init__(self, seed: int, stall: float, pipelining: bool = False) -> None:
        self.faults = Faults(seed, stall, pipelining=pipelining)
        self.port = free_port()
        self.controller = Controller(self.faults, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> FaultySmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
