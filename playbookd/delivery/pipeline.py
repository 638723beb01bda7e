"""The send phase of SMTP over a connection that offers PIPELINING (RFC 2920).

aiosmtplib opens the connection (greeting, EHLO, STARTTLS, AUTH) and the transport then reads it
with `Replies` instead: aiosmtplib drops a reply that arrives before it asked for one, so it cannot
take MAIL, RCPT and DATA in one write. Every reply is hostile until parsed: lines and replies are
bounded, each reply has one deadline however slowly its bytes come, and anything that is not
`ddd[ -]text` ends the connection with the text as it came. So does a reply nobody asked for (one
sent while the connection idles): it would pair with the next command, so the connection is closed
and the next message goes out on a fresh one.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable

MAX_LINE = 2048  # bytes in one reply line; RFC 5321 asks for 512 at most
MAX_LINES = 100  # lines in one multi-line reply
_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])([^\r\n]*))?\r?\n")  # "250" alone is a last line too
_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_DOT = re.compile(rb"^\.", re.MULTILINE)


class Lost(Exception):
    """The connection closed, or no reply came in time: what was written may or may not have arrived."""


class Garbled(Exception):
    """The server sent something that is not an SMTP reply; the message has the text as received."""


class Replies(asyncio.Protocol):
    """Parses replies as they arrive and queues them in order; the first fault sticks and ends the
    connection (`on_fault`), and what arrives after it is dropped. `expected` counts the replies asked
    for and not yet parsed: bytes beyond them are a fault, so `ready` never holds more than were asked."""

    def __init__(self, on_fault: Callable[[], object] | None = None) -> None:
        self.buffer = bytearray()
        self.lines: list[str] = []
        self.ready: deque[tuple[int, str]] = deque()
        self.expected = 0
        self.fault: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.on_fault = on_fault

    def data_received(self, data: bytes) -> None:
        if self.fault is not None:
            return  # the connection is being closed; nothing after a fault is read
        self.buffer += data
        while self.fault is None and (end := self.buffer.find(b"\n")) >= 0:
            self._line(bytes(self.buffer[:end + 1]))
            del self.buffer[:end + 1]
        if self.fault is None and self.buffer and self.expected == 0:
            self._fail(Garbled(f"a reply nobody asked for: {bytes(self.buffer[:MAX_LINE])!r}"))
        if self.fault is None and len(self.buffer) > MAX_LINE:
            self._fail(Garbled(f"a reply line longer than {MAX_LINE} bytes: {bytes(self.buffer[:MAX_LINE])!r}"))
        self._wake()

    def _line(self, raw: bytes) -> None:
        if self.expected == 0:
            self._fail(Garbled(f"a reply nobody asked for: {' | '.join([*self.lines, repr(raw)])}"))
            return
        match = _LINE.fullmatch(raw)
        if len(raw) > MAX_LINE or match is None:
            self._fail(Garbled(f"not an SMTP reply: {' | '.join([*self.lines, repr(raw)])}"))
            return
        code, more, text = match.group(1), match.group(2) or b" ", match.group(3) or b""
        if self.lines and not self.lines[0].startswith(code.decode()):
            self._fail(Garbled(f"reply codes change within one reply: {' | '.join(self.lines)} | {raw!r}"))
            return
        self.lines.append(f"{code.decode()} {text.decode('utf-8', 'replace')}")
        if len(self.lines) > MAX_LINES:
            self._fail(Garbled(f"a reply of more than {MAX_LINES} lines: {' | '.join(self.lines[:5])} ..."))
        elif more == b" ":
            self.ready.append((int(code), "\n".join(line[4:] for line in self.lines)))
            self.lines = []
            self.expected -= 1

    def _fail(self, fault: Exception) -> None:
        if self.fault is not None:
            return
        self.fault = fault
        self.buffer.clear()
        if self.on_fault is not None:
            self.on_fault()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Lost(f"connection closed by the server{f': {exc}' if exc else ''}"))
        self._wake()

    def eof_received(self) -> bool:
        self._fail(Lost("connection closed by the server"))
        self._wake()
        return False


class Pipe:
    """A connection taken over for the send phase. `write` queues commands and says how many replies they
    ask for; `reply` returns the next reply, waiting at most `timeout` for it in all."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self.transport = transport
        self.timeout = timeout
        self.replies = Replies(on_fault=transport.close)
        transport.set_protocol(self.replies)

    @property
    def alive(self) -> bool:
        return self.replies.fault is None and not self.transport.is_closing()

    def write(self, data: bytes, replies: int) -> None:
        if self.transport.is_closing():
            raise Lost("connection closed")
        self.replies.expected += replies  # counted first: a fast reply must not look unasked for
        self.transport.write(data)

    async def reply(self) -> tuple[int, str]:
        replies = self.replies
        loop = asyncio.get_running_loop()
        # one deadline for the whole reply: a server dripping bytes must not restart the wait with each
        deadline = loop.time() + self.timeout
        while not replies.ready:
            if replies.fault is not None:
                raise replies.fault
            left = deadline - loop.time()
            if left <= 0:
                replies._fail(Lost(f"no reply within {self.timeout:g} s"))  # the next reply would be out of step
                continue
            replies.waiter = loop.create_future()
            try:
                await asyncio.wait_for(replies.waiter, left)
            except TimeoutError:
                pass  # the deadline check above fails the connection
            finally:
                replies.waiter = None
        return replies.ready.popleft()

    def close(self) -> None:
        self.transport.close()


def body(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF line ends, leading dots doubled, ended by CRLF.CRLF."""
    data = _DOT.sub(b"..", _ENDINGS.sub(b"\r\n", data))
    return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")
