"""The HTTP listener on a loopback port, and clients for it: well-behaved ones and hand-written requests."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from playbookd.service import http


@contextmanager
def serving(site: http.Site, limits: http.Limits | None = None) -> Iterator[str]:
    """The listener on a free loopback port; yields its base URL."""
    server = http.Server("127.0.0.1:0", site, limits)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def request(url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post_events(url: str, body: object, token: str | None = "tok3n") -> tuple[int, dict[str, object]]:
    return post_raw_events(url, json.dumps(body).encode(), token)


def post_raw_events(url: str, body: bytes, token: str | None = "tok3n") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(f"{url}/events", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def connect(url: str, timeout: float = 15) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_reply(conn: socket.socket) -> tuple[int, bytes]:
    """(status, whole reply) of a response the server ends by closing the connection."""
    reply = b""
    while chunk := conn.recv(65536):
        reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """A hand-written request, for headers no well-behaved client would send."""
    with connect(url) as conn:
        conn.sendall(head.encode() + b"\r\n\r\n" + body)
        return read_reply(conn)


def closed_by_server(conn: socket.socket, timeout: float) -> bool:
    """Whether the server closes `conn` within `timeout` (reading and discarding what it says)."""
    conn.settimeout(timeout)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True
