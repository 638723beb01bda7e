"""kill -9 of the daemon at seeded random moments during delivery, then a restart, several times over:
no email goes out twice, and each message that was in flight at a kill is `unknown`, never resent."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import SmtpServer, free_port, smtp_server_both_ways  # noqa: F401

KILLS = 3
CONNECTIONS, BATCH = 2, 3


def outbox(project: Path) -> dict[str, str]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return dict(conn.execute("select message_id, state from outbox").fetchall())


@pytest.mark.parametrize("processes", [1, 2])  # 2: the daemon and a sending process, which dies with it
def test_kill_9_at_random_moments_never_sends_twice(tmp_path: Path, smtp_server: SmtpServer, processes: int) -> None:
    rng = random.Random(20261125)
    assert playbookd("init", "project", "--accounts", "120", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, http={"listen": f"127.0.0.1:{free_port()}"}, scheduler={"deliver_every": "1s"},
                logging={"format": "json"},
                delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None, "rate_per_second": 1000,
                          "processes": processes,
                          "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "timeout": 5,
                                   "connections": CONNECTIONS, "batch": BATCH}})
    recorder = smtp_server.recorder
    recorder.data_delay = 0.15  # each message is in flight a while: a kill often lands inside a transaction
    in_flight = 0
    for n in range(KILLS):
        daemon = Daemon(project, name=f"daemon{n}")
        seen = recorder.in_data
        daemon.wait_for("deliveries under way", lambda seen=seen: recorder.in_data > seen)  # type: ignore[misc]
        time.sleep(rng.uniform(0.0, 1.5))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=30)
        states = Counter(outbox(project).values())
        assert states["sending"] <= processes * CONNECTIONS * BATCH, states  # the README's bound in flight
        in_flight += states["sending"]
    recorder.data_delay = 0.0
    last = Daemon(project, name="last")
    last.wait_for("the outbox drained", lambda: not {"queued", "claimed", "sending"} & set(outbox(project).values()),
                  timeout=120)
    assert last.stop() == 0
    rows = outbox(project)
    received = Counter(str(r.message["Message-ID"]) for r in recorder.received)
    assert received and max(received.values()) == 1, "an email went out twice"
    assert set(received) <= set(rows)
    assert all(rows[m] in ("sent", "unknown") for m in received)  # what arrived is never queued again
    assert all(received[m] == 1 for m, s in rows.items() if s == "sent")
    assert Counter(rows.values())["unknown"] == in_flight  # exactly the messages in flight at a kill
