"""Three replicas on the real PostgreSQL and a real SMTP server; the leader is killed mid-run.

Every email simulate predicted must arrive exactly once: none lost, none twice. Those the
leader may have been sending when it died (at most connections x batch) are `unknown` and none arrived twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import yaml
from cli_helpers import Daemon, edit_config, json_lines, playbookd
from smtp_server import SmtpServer, free_port
from sqlalchemy import create_engine, select

from playbookd.store.schema import outbox, ranges

CONNECTIONS, BATCH = 2, 3


def replica_config(project: Path, index: int) -> str:
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["http"] = {"listen": f"127.0.0.1:{free_port()}"}
    name = f"config-{index}.yaml"
    (project / name).write_text(yaml.safe_dump(config))
    return name


def leaders(replicas: list[Daemon]) -> list[int]:
    return [i for i, r in enumerate(replicas) if r.proc.poll() is None and "leading" in r.messages()]


def test_three_replicas_leader_killed_every_email_exactly_once(tmp_path: Path, pg_url: str,
                                                               smtp_server: SmtpServer) -> None:
    assert playbookd("init", "project", "--accounts", "200", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, database=pg_url, logging={"format": "json"}, evaluation={"range_size": 25},
                scheduler={"deliver_every": "1s"},
                delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None, "rate_per_second": 15,
                          "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "connections": CONNECTIONS,
                                   "batch": BATCH}})
    assert playbookd("sync", cwd=project).returncode == 0
    expected = Counter((e["playbook"], e["account"], to)
                       for e in json_lines(playbookd("simulate", "--format", "json", cwd=project).stdout)
                       if e["action"] == "email" for to in e["to"])
    assert sum(expected.values()) > 40

    replicas = [Daemon(project, {"PLAYBOOKD_CONFIG": replica_config(project, i)}, name=f"replica-{i}")
                for i in range(3)]
    engine = create_engine(pg_url)
    try:
        replicas[0].wait_for("a leader", lambda: len(leaders(replicas)) == 1)
        leader = leaders(replicas)[0]
        replicas[0].wait_for("deliveries under way", lambda: len(smtp_server.received) >= 10)
        replicas[leader].proc.send_signal(signal.SIGKILL)
        replicas[leader].proc.wait(timeout=10)
        killed_at = time.monotonic()
        others = [r for i, r in enumerate(replicas) if i != leader]
        others[0].wait_for("a new leader", lambda: any("leading" in r.messages() for r in others), timeout=30)
        assert time.monotonic() - killed_at <= 30

        def settled() -> bool:
            with engine.connect() as conn:
                states = Counter(conn.execute(select(outbox.c.state)).scalars())
            return sum(states.values()) >= sum(expected.values()) and not {"queued", "claimed", "sending"} & set(states)

        others[0].wait_for("every email settled", settled, timeout=120)
        for replica in others:
            assert replica.stop() == 0
        with engine.connect() as conn:
            rows = conn.execute(select(outbox.c.playbook_id, outbox.c.account_id, outbox.c.to_addr,
                                       outbox.c.message_id, outbox.c.state)).all()
            workers = set(conn.execute(select(ranges.c.claimed_by)).scalars())
            assert len(conn.execute(select(ranges.c.id)).all()) >= 8, "200 accounts in ranges of 25"
    finally:
        for replica in replicas:
            if replica.proc.poll() is None:
                replica.proc.kill()
        engine.dispose()

    assert Counter((r.playbook_id, r.account_id, r.to_addr) for r in rows) == expected
    received = Counter(str(m.message["Message-ID"]) for m in smtp_server.received)
    assert max(received.values()) == 1, "an email arrived twice"
    states = Counter(r.state for r in rows)
    # only the killed leader's batches in flight can be unknown
    assert set(states) <= {"sent", "unknown"} and states["unknown"] <= CONNECTIONS * BATCH, states
    assert all(received[r.message_id] == 1 for r in rows if r.state == "sent")
    assert workers - {None}, "ranges were evaluated"
