"""Serving the HTTP application on uvicorn, in one thread of the daemon, with the limits uvicorn lacks.

uvicorn never times out a connection that has not finished its request headers, and its
`limit_concurrency` answers 503 to everyone once such connections fill it, so a few hundred
half-open sockets would hold the listener for good. Here every connection must deliver its
request headers within `header_seconds` of connecting (or of its previous response), and at
most `max_connections` are open: a newcomer over the bound closes the oldest connection still
waiting for its headers, so a client that sends its request at once is served while the slow
ones are dropped; when every connection is busy with a request, the newcomer gets a 503.
Request bodies are limited in size and time by the application (http_app).

A reply sent before the request body was read (a 413 as the body passes its cap, a 400 for a
malformed request) is followed by a lingering close: the write side is shut, what the client is
still sending is read and dropped for up to `linger_seconds`, and only then is the socket closed.
Closing at once with unread data makes the kernel send a reset, which can destroy the reply
before the client reads it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from playbookd.service import metrics

log = logging.getLogger("playbookd.http")
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    header_seconds: float = 10  # to send the request line and headers
    body_seconds: float = 10  # to send the whole body once the headers are in
    max_connections: int = 1000  # open at once; lowered to half the open-file limit when that is smaller
    header_bytes: int = 16 * 1024  # of request line and headers still unfinished; more is a 400
    backlog: int = 256  # connections the kernel queues before the listener accepts them
    grace_seconds: float = 3  # requests in flight may finish within this on shutdown
    linger_seconds: float = 2  # to drain a request body left unread behind a final reply
    linger_bytes: int = 16 * 1024 * 1024  # drained at most; past it the socket is closed (and reset)


def connection_bound(wanted: int) -> int:
    """Half the open-file limit keeps room for the database, SMTP and log files under a flood."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft // 2))


class Gate:
    """The open connections, and those waiting for their request headers, oldest first."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.open: set[Bounded] = set()
        self.waiting: dict[Bounded, None] = {}  # a dict keeps insertion order: the oldest comes first

    def admit(self, connection: Bounded) -> bool:
        if len(self.open) >= self.bound:
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                return False
            oldest.drop("evicted", "the connection bound was reached and it was the oldest still waiting for headers")
        self.open.add(connection)
        return True

    def leave(self, connection: Bounded) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class Lingering:
    """The connection's transport, whose `close` becomes a lingering close while the client may still
    be sending its request (see the module's docstring). Everything else is the real transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: Bounded) -> None:
        self.real = transport
        self.protocol = protocol
        self.timer: asyncio.TimerHandle | None = None
        self.drained = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @property
    def lingering(self) -> bool:
        return self.timer is not None

    def is_closing(self) -> bool:
        return self.lingering or self.real.is_closing()

    def close(self) -> None:
        if self.lingering or self.real.is_closing():
            return
        if not self.protocol.still_reading() or not self.real.can_write_eof():
            self.real.close()
            return
        self.real.write_eof()  # sent once the reply already written has been flushed
        self.real.resume_reading()
        self.timer = self.protocol.loop.call_later(self.protocol.limits.linger_seconds, self.real.close)
        # bounded in time and bytes, a lingering socket no longer takes one of the connections served
        self.protocol.gate.leave(self.protocol)

    def drain(self, data: bytes) -> None:
        self.drained += len(data)
        if self.drained > self.protocol.limits.linger_bytes:
            self.end()

    def end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.real.close()


class Bounded(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for request headers and a bound on connections.
    Subclassed per listener (see `protocol`), which sets the two class attributes."""

    gate: ClassVar[Gate]
    limits: ClassVar[Limits]
    deadline: asyncio.TimerHandle | None = None
    lingering: Lingering

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.lingering = Lingering(transport, self)
        super().connection_made(self.lingering)  # type: ignore[arg-type]
        if not self.gate.admit(self):
            metrics.HTTP_CUT.labels("busy").inc()
            log.debug("connection refused: %d connections open, all of them busy", len(self.gate.open))
            transport.write(BUSY)
            transport.close()
            return
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        if self.lingering.timer is not None:
            self.lingering.timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering.lingering:
            self.lingering.drain(data)
        else:
            super().data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self.lingering.lingering:  # the client has sent all it will: nothing is left to reset
            self.lingering.end()
        return None

    def still_reading(self) -> bool:
        return self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete: its body has its own deadline
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_request()

    def _await_request(self) -> None:
        self._stop_waiting()
        self.gate.waiting[self] = None
        seconds = self.limits.header_seconds
        self.deadline = self.loop.call_later(seconds, self.drop, "slow_headers",
                                             f"no complete request headers within {seconds:g} s")

    def _stop_waiting(self) -> None:
        self.gate.waiting.pop(self, None)
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _forget(self) -> None:
        self._stop_waiting()
        self.gate.leave(self)

    def drop(self, reason: str, why: str) -> None:
        """Counted, and logged at debug only: a flood of these must not become a flood of log lines."""
        metrics.HTTP_CUT.labels(reason).inc()
        log.debug("connection closed: %s", why, extra={"client": ":".join(map(str, self.client or ()))})
        self._forget()
        self.lingering.end()  # a client this slow or this many gets no lingering close


def protocol(limits: Limits) -> type[Bounded]:
    """A protocol class of this listener's own: uvicorn instantiates it without arguments of ours."""
    attributes = {"gate": Gate(connection_bound(limits.max_connections)), "limits": limits}
    return type("ListenerProtocol", (Bounded,), attributes)


def bind(listen: str, backlog: int) -> socket.socket:
    """Bound here, in the caller's thread, so an address in use is an OSError the daemon reports."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family, backlog=backlog)
    except OSError as exc:  # create_server appends the address to strerror; the caller names it already
        raise OSError(exc.errno, os.strerror(exc.errno) if exc.errno else str(exc)) from None


class Listener:
    """uvicorn on a socket bound at construction, run in a thread; `shutdown` lets requests in flight
    finish for up to `grace_seconds`, then returns."""

    def __init__(self, listen: str, app: Any, limits: Limits) -> None:
        self.socket = bind(listen, limits.backlog)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.limits = limits
        config = uvicorn.Config(
            app, http=protocol(limits), loop="asyncio", lifespan="off", ws="none", interface="asgi3",
            log_config=None, log_level="warning", access_log=False, proxy_headers=False,
            server_header=False, headers=[("Server", "playbookd")], backlog=limits.backlog,
            h11_max_incomplete_event_size=limits.header_bytes,
            timeout_graceful_shutdown=max(1, round(limits.grace_seconds)))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, name="http",
                                       daemon=True)

    def start(self) -> threading.Thread:
        self.thread.start()
        return self.thread

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(self.limits.grace_seconds + 2)
        else:
            self.socket.close()  # never started: the socket is still ours to close
