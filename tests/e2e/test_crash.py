"""kill -9 at the worst moment: no email is sent twice; the messages in flight, at most connections x batch,
are reported as unknown."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import SmtpServer, free_port
from sqlalchemy import select

from playbookd.store.database import connect
from playbookd.store.schema import outbox as table

CONNECTIONS, BATCH = 2, 3


def outbox(url: str) -> list[tuple[str, str]]:
    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            return [(r.message_id, r.state) for r in conn.execute(select(table.c.message_id, table.c.state))]
    finally:
        engine.dispose()


def test_sigkill_mid_transaction_then_restart(tmp_path: Path, smtp_server: SmtpServer, db_url: str) -> None:
    assert playbookd("init", "project", "--accounts", "150", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, database=db_url, http={"listen": f"127.0.0.1:{free_port()}"},
                scheduler={"deliver_every": "1s"},
                logging={"format": "json"},
                delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None, "rate_per_second": 1000,
                          "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "timeout": 5,
                                   "connections": CONNECTIONS, "batch": BATCH}})
    recorder = smtp_server.recorder
    first = Daemon(project)
    first.wait_for("a few deliveries", lambda: len(recorder.received) >= 5)
    recorder.data_delay = 2.0  # the next message's body arrives, then the reply waits
    seen = recorder.in_data
    first.wait_for("a message in flight", lambda: recorder.in_data > seen)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=30)
    recorder.data_delay = 0.0
    states = Counter(state for _, state in outbox(db_url))
    in_flight = states["sending"]  # the batches the connections were sending
    assert 1 <= in_flight <= CONNECTIONS * BATCH, states

    second = Daemon(project)
    second.wait_for("the outbox drained", lambda: not {"queued", "sending"} & {s for _, s in outbox(db_url)})
    assert second.stop() == 0
    rows = dict(outbox(db_url))
    received = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
    assert max(received.values()) == 1, "an email went out twice"
    assert Counter(rows.values())["unknown"] == in_flight
    assert all(received[m] == 1 for m, s in rows.items() if s == "sent")
    assert set(received) <= set(rows)
    status = playbookd("status", cwd=project).stdout
    assert "unknown" in status
    unknown_id = playbookd("outbox", "list", "--state", "unknown", cwd=project).stdout.splitlines()[1].split()[0]
    assert playbookd("outbox", "drop", unknown_id, cwd=project).returncode == 0
    assert Counter(s for _, s in outbox(db_url))["dropped"] == 1
