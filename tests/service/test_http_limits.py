"""The listener against hostile clients, over real sockets: bodies past their cap or never finished,
headers sent a byte at a time, and more connections than it will hold."""

from __future__ import annotations

import resource
import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from http_helpers import closed_by_server, connect, read_reply, request, serving
from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.delivery.unsubscribe import sign
from playbookd.service import http
from playbookd.service.http_server import connection_bound
from playbookd.store.database import connect as connect_store
from playbookd.store.database import utcnow
from playbookd.store.schema import accounts, events, suppressions

SECRET = b"s3cret"
QUICK = http.Limits(header_seconds=1, body_seconds=1)
EVENTS_HEAD = "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok3n\r\n"


def site(engine: Engine) -> http.Site:
    return http.Site(engine, SECRET, "Acme", lambda: http.health(engine), "tok3n")


@pytest.fixture
def quick(engine: Engine) -> Iterator[str]:
    with engine.begin() as conn:
        conn.execute(accounts.insert(), [{"id": "A", "segment": "s", "data": {}, "changes": {}, "synced_at": utcnow(),
                                          "created_at": utcnow()}])
    with serving(site(engine), QUICK) as url:
        yield url


def nothing_stored(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not conn.execute(select(events.c.id)).first() and not conn.execute(select(suppressions.c.email)).first()


def unsubscribe_head(extra: str) -> str:
    return f"POST /unsubscribe/{sign(SECRET, 'ana@customer.example', 'x')} HTTP/1.1\r\nHost: x\r\n{extra}"


@pytest.mark.parametrize(("head", "cap"), [(EVENTS_HEAD, http.MAX_EVENTS_BODY), (unsubscribe_head(""), http.MAX_BODY)],
                         ids=["events", "unsubscribe"])
def test_a_body_without_a_length_is_refused_as_it_passes_the_cap(quick: str, engine: Engine, head: str,
                                                                 cap: int) -> None:
    with connect(quick) as conn:
        conn.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        for _ in range(cap // 0x4000 + 2):
            conn.sendall(chunk)
        # the body never ends: a server waiting for it would answer 408, not 413
        status, reply = read_reply(conn)
    assert status == 413 and f"over {cap} bytes".encode() in reply
    assert nothing_stored(engine)


def test_a_client_still_sending_after_the_refusal_reads_it_before_the_close(quick: str, engine: Engine) -> None:
    """Closing on unread data resets the connection and can destroy the 413 already sent: the server
    drains what follows for a while, so the client's sends go through and the reply is there to read."""
    with connect(quick) as conn:
        conn.sendall(f"{EVENTS_HEAD}Content-Length: {http.MAX_EVENTS_BODY * 4}\r\n\r\n".encode())
        time.sleep(0.2)  # the 413 is sent at once for the declared length, before any of the body
        conn.sendall(b" " * http.MAX_EVENTS_BODY)
        status, reply = read_reply(conn)
    assert status == 413 and b"over" in reply
    assert nothing_stored(engine)


@pytest.mark.parametrize("head", [EVENTS_HEAD, unsubscribe_head("")], ids=["events", "unsubscribe"])
def test_a_declared_length_over_the_cap_is_refused_before_any_body(quick: str, engine: Engine, head: str) -> None:
    with connect(quick) as conn:
        conn.sendall(f"{head}Content-Length: 200000000\r\n\r\n".encode())
        status, _ = read_reply(conn)
    assert status == 413 and nothing_stored(engine)


@pytest.mark.parametrize("length", ["-1", "abc", "5, 6", ""])
def test_a_length_that_is_not_a_number_is_a_400(quick: str, engine: Engine, length: str) -> None:
    with connect(quick) as conn:
        conn.sendall(unsubscribe_head(f"Content-Length: {length}\r\n\r\n").encode() + b"List-Unsubscribe=One-Click")
        assert read_reply(conn)[0] == 400
    assert nothing_stored(engine)


def test_a_body_shorter_than_its_length_is_cut_after_body_seconds(quick: str, engine: Engine) -> None:
    with connect(quick) as conn:
        conn.sendall(f"{EVENTS_HEAD}Content-Length: 300\r\n\r\n".encode() + b'{"account": "A", "name": "x"}')
        status, reply = read_reply(conn)
    assert status == 408 and b"did not arrive within 1 s" in reply
    assert nothing_stored(engine)


def test_a_body_sent_a_byte_at_a_time_is_cut_though_bytes_keep_coming(quick: str, engine: Engine) -> None:
    body = b'{"account": "A", "name": "x", "data": {"pad": "' + b" " * 200 + b'"}}'
    with connect(quick) as conn:
        conn.sendall(f"{EVENTS_HEAD}Content-Length: {len(body)}\r\n\r\n".encode())
        sent = 0
        try:
            for byte in body:  # 230 bytes, 50 ms apart: more than 10 s at this pace
                conn.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(body)
        assert closed_by_server(conn, 5)
    assert nothing_stored(engine)


def test_headers_sent_a_byte_at_a_time_are_cut(quick: str) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 200 + b"\r\n\r\n"
    with connect(quick) as conn:
        sent = 0
        try:
            for byte in head:
                conn.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(head)  # cut before the headers were complete
        assert closed_by_server(conn, 5)


def test_a_client_that_stops_sending_its_headers_is_dropped(quick: str) -> None:
    with connect(quick) as conn:
        conn.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert closed_by_server(conn, 10)


def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request(quick: str) -> None:
    with connect(quick) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second request's headers never end
        assert closed_by_server(conn, 10)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """The connection tests exercise the transport only; one database is enough."""
    engine = connect_store(f"sqlite:///{tmp_path}/test.db")
    yield engine
    engine.dispose()


def test_when_every_connection_is_busy_a_newcomer_is_told_503(sqlite_engine: Engine) -> None:
    with serving(site(sqlite_engine), http.Limits(max_connections=2, body_seconds=2)) as url, ExitStack() as stack:
        for _ in range(2):  # two requests waiting for bodies that are not coming
            busy = stack.enter_context(connect(url))
            busy.sendall(f"{EVENTS_HEAD}Content-Length: 100\r\n\r\n".encode())
        time.sleep(0.3)
        with connect(url) as newcomer:
            assert newcomer.recv(65536).startswith(b"HTTP/1.1 503")
        time.sleep(2.5)  # the busy ones are cut at body_seconds, which makes room
        assert request(f"{url}/healthz")[0] == 200


def open_files_for(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def closed(clients: list[socket.socket]) -> int:
    """How many of `clients` the server has closed: each is readable, with nothing to read."""
    with selectors.DefaultSelector() as selector:
        for conn in clients:
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
        ready = [key.fileobj for key, _ in selector.select(timeout=2)]
    count = 0
    for conn in ready:
        try:
            count += conn.recv(1) == b""  # type: ignore[union-attr]
        except ConnectionResetError:
            count += 1
    return count


def test_1500_half_open_connections_neither_hold_threads_nor_the_health_check(sqlite_engine: Engine) -> None:
    open_files_for(4096)
    bound = connection_bound(http.Limits().max_connections)
    before = threading.active_count()
    with serving(site(sqlite_engine), http.Limits(header_seconds=60)) as url, ExitStack() as stack:
        clients: list[socket.socket] = []
        for _ in range(1500):
            conn = stack.enter_context(connect(url))
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            clients.append(conn)
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
            assert answer.status == 200
        threads = threading.active_count() - before
        # the oldest half-open connections made room for the newer ones and the health check
        dropped = closed(clients)
        cut = request(f"{url}/metrics")[1]
    assert 'playbookd_http_cut_total{reason="evicted"}' in cut
    assert threads <= 45  # the server's loop and at most its worker pool, not a thread per connection
    assert dropped >= 1500 + 1 - bound


def test_shutdown_closes_every_connection_and_stops_listening(sqlite_engine: Engine) -> None:
    server = http.Server("127.0.0.1:0", site(sqlite_engine), http.Limits(grace_seconds=1, body_seconds=30))
    thread = server.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert request(f"{url}/healthz")[0] == 200
    with connect(url) as idle, connect(url) as in_flight:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        in_flight.sendall(f"{EVENTS_HEAD}Content-Length: 100\r\n\r\n".encode())  # a body that never comes
        time.sleep(0.3)
        server.shutdown()
        assert not thread.is_alive()  # within the grace period, not after the 30 s body limit
        assert closed_by_server(idle, 1) and closed_by_server(in_flight, 1)
    with pytest.raises(ConnectionRefusedError):
        connect(url)


def test_unfinished_headers_piling_up_past_their_size_limit_are_a_400(quick: str) -> None:
    with connect(quick) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            conn.sendall(b"X-Padding: " + b"a" * 8_000 + b"\r\n")
            time.sleep(0.1)
        assert read_reply(conn)[0] == 400
