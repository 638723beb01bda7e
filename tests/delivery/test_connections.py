"""Delivery over several SMTP connections kept between ticks, and from several processes
(`delivery.processes`), against a real SMTP server; on a SQLite file and on PostgreSQL. Messages
are queued straight into the outbox. Each sending process claims under its own worker id; one that
dies is reported, and what it had in flight is settled like a crashed daemon's: `unknown`, never resent."""

from __future__ import annotations

import functools
import multiprocessing
import operator
import os
import re
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from smtp_server import SmtpServer
from sqlalchemy import func, insert, select

from playbookd.cli.output import echo_status
from playbookd.delivery.courier import Courier
from playbookd.delivery.senders import SenderFailed
from playbookd.service import cycle, metrics
from playbookd.store.database import transaction
from playbookd.store.schema import outbox

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"


def project(make: Any, db_url: str, server: SmtpServer, connections: int, batch: int = 5,
            rate: float = 100_000) -> Any:
    smtp = {"host": "127.0.0.1", "port": server.port, "timeout": 5, "connections": connections, "batch": batch}
    return make({"hello": HELLO}, database=db_url, delivery={"transport": "smtp", "smtp": smtp, "quiet_hours": None,
                                                              "frequency_cap": None, "rate_per_second": rate})


def queue(p: Any, first: int, count: int) -> None:
    rows = [{"key": f"k{n}", "message_id": f"<m{n}@test.example>", "playbook_id": "hello", "account_id": "ACC-1",
             "to_addr": f"c{n}@harbor.example", "template": "login_nudge", "category": "product_tips",
             "priority": 0, "subject": f"Hi {n}", "html": "<p>Hi</p>", "text": "Hi", "state": "queued",
             "attempts": 0, "headers": {"List-Unsubscribe-URL": f"https://cs.example/u/{n}"}, "not_before": T0,
             "created_at": T0} for n in range(first, first + count)]
    with transaction(p.engine) as conn:
        conn.execute(insert(outbox), rows)


def sent_once(server: SmtpServer, count: int) -> bool:
    ids = [str(r.message["Message-ID"]) for r in server.received]
    return len(ids) == len(set(ids)) == count


def test_one_connection_is_kept_across_ticks(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = project(make, db_url, smtp_server, connections=1)
    courier = Courier(p.runtime)
    try:
        for tick in range(3):
            queue(p, tick * 10, 10)
            assert courier.deliver(p.engine, clock=lambda: T0).sent == 10
    finally:
        courier.close()
    assert sent_once(smtp_server, 30)
    assert smtp_server.recorder.connections == 1  # one per tick before


def test_connections_send_at_once(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = project(make, db_url, smtp_server, connections=4, batch=3)
    queue(p, 0, 12)
    smtp_server.recorder.data_delay = 0.3
    courier = Courier(p.runtime)
    try:
        report = courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()
    assert report.sent == 12 and sent_once(smtp_server, 12)
    assert smtp_server.recorder.connections == 4
    assert smtp_server.recorder.peak > 1  # one message at a time before


def test_a_connection_the_server_dropped_is_opened_again(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = project(make, db_url, smtp_server, connections=1)
    courier = Courier(p.runtime)
    try:
        queue(p, 0, 3)
        assert courier.deliver(p.engine, clock=lambda: T0).sent == 3
        smtp_server.controller.stop()  # every kept connection is closed by the server
        smtp_server.controller = Controller(smtp_server.recorder, hostname="127.0.0.1", port=smtp_server.port)
        smtp_server.controller.start()
        queue(p, 3, 3)
        report = courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()
    assert (report.sent, report.retried, report.failed) == (3, 0, 0)
    assert sent_once(smtp_server, 6)
    assert smtp_server.recorder.connections == 2


def test_rate_per_second_holds_over_all_connections_and_ticks(make: Any, db_url: str,
                                                              smtp_server: SmtpServer) -> None:
    p = project(make, db_url, smtp_server, connections=4, batch=2, rate=20)
    courier = Courier(p.runtime)
    try:
        started = time.monotonic()
        for tick in range(2):
            queue(p, tick * 15, 15)
            assert courier.deliver(p.engine, clock=lambda: T0).sent == 15
        elapsed = time.monotonic() - started
    finally:
        courier.close()
    assert sent_once(smtp_server, 30)
    assert elapsed >= 29 / 20  # 30 sends at 20/s take at least 1.45 s, whatever the connections


def test_a_stop_hands_back_the_round_no_connection_took(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = project(make, db_url, smtp_server, connections=2, batch=3, rate=20)  # slow: the stop comes mid-round
    queue(p, 0, 12)
    stop = threading.Event()
    smtp_server.recorder.on_received = stop.set  # the stop comes as the first message arrives, however slow
    courier = Courier(p.runtime)  # the machine is: at 20/s the other eleven are still to go
    try:
        report = courier.deliver(p.engine, stop=stop, clock=lambda: T0)
    finally:
        courier.close()
    with p.engine.connect() as conn:
        states = dict(conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all())
    assert 0 < report.sent < 12 and sent_once(smtp_server, report.sent)
    assert states == {"sent": report.sent, "queued": 12 - report.sent}  # nothing left claimed or sending


# a clock a sending process can receive (pickled): a lambda cannot be
CLOCK = functools.partial(datetime.fromtimestamp, T0.timestamp(), UTC)


def with_processes(p: Any, processes: int) -> Any:
    p.runtime.config.delivery.processes = processes
    return p


def states(p: Any) -> Counter[str]:
    with p.engine.connect() as conn:
        return Counter(conn.execute(select(outbox.c.state)).scalars())


def workers_of(p: Any) -> set[str]:
    with p.engine.connect() as conn:
        return set(conn.execute(select(outbox.c.claimed_by).where(outbox.c.state == "sent")).scalars())


def test_processes_share_the_queue_and_the_rate(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 2)
    courier = Courier(p.runtime)
    try:
        assert courier.pacer.rate == p.runtime.config.delivery.rate_per_second / 2
        courier.deliver(p.engine, clock=CLOCK)  # the sending process starts
        queue(p, 0, 40)
        smtp_server.recorder.data_delay = 0.02
        report = courier.deliver(p.engine, clock=CLOCK)
    finally:
        courier.close()
    assert report.sent == 40 and sent_once(smtp_server, 40)
    assert len(workers_of(p)) == 2  # both processes claimed and sent
    assert smtp_server.recorder.connections == 4  # each process has its own connections


def test_a_stop_drains_every_process(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 2)
    courier = Courier(p.runtime)
    stop = threading.Event()
    try:
        courier.deliver(p.engine, clock=CLOCK)
        queue(p, 0, 60)
        smtp_server.recorder.data_delay = 0.05
        threading.Timer(0.5, stop.set).start()
        report = courier.deliver(p.engine, stop, clock=CLOCK)
    finally:
        courier.close()
    left = states(p)
    assert 0 < report.sent < 60 and left["sent"] == report.sent == len(smtp_server.received)
    assert left["queued"] == 60 - report.sent and not left["sending"] and not left["claimed"]


def kill_while_sending(p: Any, pid: int) -> None:
    """SIGKILL the sender once a batch of its is in `sending` (however slowly a loaded machine gets
    there), so it dies with messages in flight; at most a minute of looking."""
    mine = outbox.c.claimed_by.like(f"%:{pid}:%")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with p.engine.connect() as conn:
            if conn.execute(select(func.count()).where(outbox.c.state == "sending", mine)).scalar():
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.02)


def test_a_dead_sender_is_reported_and_its_messages_settled(make: Any, db_url: str, smtp_server: SmtpServer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    connections, batch = 2, 3
    p = with_processes(project(make, db_url, smtp_server, connections=connections, batch=batch), 2)
    courier = Courier(p.runtime)
    try:
        courier.deliver(p.engine, clock=CLOCK)
        assert courier.senders is not None
        sender = courier.senders.pool[0]
        assert sender is not None and sender.pid is not None
        queue(p, 0, 40)
        recorder = smtp_server.recorder
        recorder.data_delay = 0.1
        threading.Thread(target=kill_while_sending, args=(p, sender.pid), daemon=True).start()
        with pytest.raises(SenderFailed, match="died") as failed:
            courier.deliver(p.engine, clock=CLOCK)
        sent_before = states(p)["sent"]
        echo_status(p.engine, "text")  # `status` runs in a process of its own: the store says it
        assert re.search(r"had a sending process \(delivery.processes\) fail.*died", capsys.readouterr().out)
        recorder.data_delay = 0.0
        report = courier.deliver(p.engine, clock=CLOCK)  # a new sender; this run settles the dead one's
    finally:
        courier.close()
    echo_status(p.engine, "text")
    assert "sending process" not in capsys.readouterr().out  # a run in which every process did its part
    left = states(p)
    assert set(left) <= {"sent", "unknown"} and left["sent"] + left["unknown"] == 40
    assert 0 < left["unknown"] <= connections * batch  # what the dead process had in flight
    assert report.unknown == left["unknown"]
    assert 0 < failed.value.report.sent <= sent_before  # what the others sent is kept (not the dead one's)
    received = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
    assert max(received.values()) == 1  # never twice


class Slow:
    """Unpickles as None after a pause: the sender receives its run late, as on a loaded machine."""

    def __reduce__(self) -> tuple[Any, tuple[float]]:
        return time.sleep, (1.0,)


def drained(p: Any, report: Any, queued: int) -> None:
    left = states(p)
    assert 0 <= report.sent < queued and left["sent"] == report.sent
    assert left["queued"] == queued - report.sent and not left["sending"] and not left["claimed"]


def test_a_stop_before_a_sender_begins_its_run_is_not_lost(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 2)
    courier = Courier(p.runtime)
    stop = threading.Event()
    try:
        courier.deliver(p.engine, clock=CLOCK)  # the sending process starts
        queue(p, 0, 100)
        smtp_server.recorder.data_delay = 0.05
        stop.set()  # passed on while the sender is still reading its run, before the run clears its flag
        report = courier.deliver(p.engine, stop, clock=functools.partial(operator.getitem, (T0, Slow()), 0))
    finally:
        courier.close()
    drained(p, report, 100)


def test_a_stop_while_the_senders_start_is_no_failure(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 3)
    queue(p, 0, 100)
    smtp_server.recorder.data_delay = 0.05
    stop = threading.Event()
    stop.set()  # before the senders installed their handler: a SIGTERM then would kill them
    courier = Courier(p.runtime)
    try:
        report = courier.deliver(p.engine, stop, clock=CLOCK)
    finally:
        courier.close()
    drained(p, report, 100)


def senders_alive() -> list[str]:
    return [c.name for c in multiprocessing.active_children() if c.name.startswith("playbookd-sender")]


def test_a_clock_a_sender_cannot_receive_fails_and_close_ends_the_senders(make: Any, db_url: str,
                                                                         smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=1), 2)
    courier = Courier(p.runtime)
    try:
        with pytest.raises(Exception, match="pickle"):
            courier.deliver(p.engine, clock=lambda: T0)
    finally:
        courier.close()
    assert senders_alive() == []


def test_a_once_run_at_a_moment_delivers_from_every_process(make: Any, db_url: str, smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 2)
    queue(p, 0, 40)
    smtp_server.recorder.data_delay = 0.02
    report = p.run(T0)
    assert report.ok and report.delivery.sent >= 40
    assert set(states(p)) == {"sent"} and sent_once(smtp_server, report.delivery.sent)
    assert senders_alive() == []


def test_send_times_of_every_process_are_in_the_daemons_metrics(make: Any, db_url: str,
                                                                 smtp_server: SmtpServer) -> None:
    p = with_processes(project(make, db_url, smtp_server, connections=2, batch=3), 2)
    courier = cycle.new_courier(p.runtime)

    def observed() -> float:
        return metrics.REGISTRY.get_sample_value("playbookd_send_seconds_count", {"transport": "smtp"}) or 0.0

    try:
        cycle.deliver_due(p.runtime, p.engine, clock=CLOCK, courier=courier)  # the sender is up
        queue(p, 0, 60)
        smtp_server.recorder.data_delay = 0.02  # each process gets its share of the queue
        before = observed()
        report = cycle.deliver_due(p.runtime, p.engine, clock=CLOCK, courier=courier)
    finally:
        courier.close()
    with p.engine.connect() as conn:
        workers = set(conn.execute(select(outbox.c.claimed_by).where(outbox.c.state == "sent")).scalars())
    assert report.sent == 60 and len(workers) == 2, workers  # both processes sent
    assert observed() - before == 60
