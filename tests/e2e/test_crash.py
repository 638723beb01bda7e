"""kill -9 at the worst moment: no email is sent twice, the one in flight is reported as unknown."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from pathlib import Path

from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import SmtpServer, free_port


def outbox(project: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return conn.execute("select message_id, state from outbox").fetchall()


def test_sigkill_mid_transaction_then_restart(tmp_path: Path, smtp_server: SmtpServer) -> None:
    assert playbookd("init", "project", "--accounts", "150", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, http={"listen": f"127.0.0.1:{free_port()}"}, scheduler={"deliver_every": "1s"},
                logging={"format": "json"},
                delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None, "rate_per_second": 1000,
                          "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "timeout": 5}})
    recorder = smtp_server.recorder
    first = Daemon(project)
    first.wait_for("a few deliveries", lambda: len(recorder.received) >= 5)
    recorder.data_delay = 2.0  # the next message's body arrives, then the reply waits
    seen = recorder.in_data
    first.wait_for("a message in flight", lambda: recorder.in_data > seen)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=30)
    recorder.data_delay = 0.0
    states = Counter(state for _, state in outbox(project))
    assert states["sending"] == 1, states  # exactly the message that was in flight

    second = Daemon(project)
    second.wait_for("the outbox drained", lambda: not {"queued", "sending"} & {s for _, s in outbox(project)})
    assert second.stop() == 0
    rows = dict(outbox(project))
    received = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
    assert max(received.values()) == 1, "an email went out twice"
    assert [m for m, s in rows.items() if s == "unknown"] == [m for m in rows if rows[m] == "unknown"][:1]
    assert Counter(rows.values())["unknown"] == 1
    assert all(received[m] == 1 for m, s in rows.items() if s == "sent")
    assert set(received) <= set(rows)
    status = playbookd("status", cwd=project).stdout
    assert "unknown" in status
    unknown_id = playbookd("outbox", "list", "--state", "unknown", cwd=project).stdout.splitlines()[1].split()[0]
    assert playbookd("outbox", "drop", unknown_id, cwd=project).returncode == 0
    assert Counter(s for _, s in outbox(project))["dropped"] == 1
