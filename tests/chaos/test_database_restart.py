"""PostgreSQL restarted (pg_ctl stop -m fast, then start) while the daemon delivers: the daemon lives
on, nothing goes out twice, and every message ends sent, or failed or unknown with a reason.

The server is a private one, made with initdb in a temporary directory on its own port: restarting
the machine's PostgreSQL would break everything else using it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, small_project
from smtp_server import SmtpServer, free_port
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from playbookd.store.schema import outbox

HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
ACCOUNTS = 60


class PrivatePostgres:
    def __init__(self, bin_dir: str) -> None:
        self.bin = Path(bin_dir)
        self.data = Path(tempfile.mkdtemp(prefix="playbookd-pg-"))
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.data, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_owner, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{tool}: {done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql to start a private one")
    server = PrivatePostgres(str(Path(found[-1]).parent))
    server.init()
    server.start()
    try:
        yield server
    finally:
        subprocess.run([*server.as_owner, str(server.bin / "pg_ctl"), "-D", str(server.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(server.data, ignore_errors=True)


def states(url: str) -> Counter[str]:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return Counter(r.state for r in conn.execute(select(outbox.c.state)))
    except OperationalError:
        return Counter({"database down": 1})
    finally:
        engine.dispose()


def settled(url: str) -> bool:
    now = states(url)
    print("outbox:", dict(now))  # shown when the wait times out
    return set(now) <= {"sent", "failed", "unknown"} and sum(now.values()) == ACCOUNTS


def test_postgresql_restarted_mid_delivery(tmp_path: Path, private_pg: PrivatePostgres) -> None:
    accounts = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n" + "".join(
        f"ACC-{i},Firm {i},5000,active,basic,adopted,maria@acme.example\n" for i in range(ACCOUNTS))
    people = "account_id,email,first_name,role,status,is_primary\n" + "".join(
        f"ACC-{i},p{i}@firm{i}.example,P{i},admin,active,true\n" for i in range(ACCOUNTS))
    with SmtpServer() as smtp:
        smtp.recorder.data_delay = 0.1  # delivery takes a few seconds: the restart lands in the middle
        path = small_project(tmp_path, accounts, people, {"hello": HELLO}, database=private_pg.url,
                             http={"listen": f"127.0.0.1:{free_port()}"}, logging={"format": "json"},
                             scheduler={"deliver_every": "1s", "evaluate_every": "5s"},
                             delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp.port,
                                                                     "timeout": 5}})
        daemon = Daemon(path)
        try:
            daemon.wait_for("deliveries under way", lambda: len(smtp.received) >= 5)
            private_pg.stop()
            time.sleep(2)  # jobs run and fail against a database that is gone
            private_pg.start()
            # a cycle cut off by the restart runs again on its next turn, so every account gets its email
            daemon.wait_for("the outbox settled", lambda: settled(private_pg.url), timeout=90)
            assert daemon.proc.poll() is None, "the daemon died with its database"
        finally:
            assert daemon.stop() == 0, daemon.log_text()
        received = Counter(str(r.message["Message-ID"]) for r in smtp.received)
    engine = create_engine(private_pg.url)
    with engine.connect() as conn:
        rows = {r.message_id: r for r in conn.execute(select(outbox))}
    engine.dispose()
    assert max(received.values()) == 1, "an email went out twice"
    assert all(rows[m].state in ("sent", "unknown") for m in received)
    assert all(received[m] == 1 for m, r in rows.items() if r.state == "sent")
    assert all(r.last_error for r in rows.values() if r.state in ("failed", "unknown"))
