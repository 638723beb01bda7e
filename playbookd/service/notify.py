"""systemd's notify protocol (Type=notify): READY, RELOADING, STOPPING and the watchdog ping.

A datagram to $NOTIFY_SOCKET, as sd_notify(3) does it; without the variable (not under
systemd) every call is a no-op, so the daemon runs the same anywhere.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        # A leading "@" names a socket in the abstract namespace.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        # systemd may already be gone (shutdown): then there is nobody to tell.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto("\n".join(fields).encode(), self.address)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", f"STATUS={status}" if status else "STATUS=running")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (253+) match the reload to this message.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=draining work in flight")

    def watchdog(self) -> None:
        """Ping at half the interval systemd expects, from the main loop: a hung loop stops the pings."""
        if not self.watchdog_usec:
            return
        now = time.monotonic()
        if now - self.last_ping >= self.watchdog_usec / 2e6:
            self.send("WATCHDOG=1")
            self.last_ping = now
