"""The real daemon with a sql source whose PostgreSQL is down, then up: it keeps running, retries the
source with backoff, and `status` (another process), /healthz, /metrics and the log say so."""

from __future__ import annotations

import contextlib
import csv
import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import free_port
from sqlalchemy import create_engine, select, text

from playbookd.store.database import connect
from playbookd.store.schema import accounts

SEEN = "2026-03-01T09:30:00+00:00"


class Forwarder:
    """Listens on `port` and passes each connection through to PostgreSQL: the database behind the
    port 'comes up' when this starts."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for one, other in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def forwarder_port() -> Iterator[tuple[int, list[Forwarder]]]:
    started: list[Forwarder] = []
    yield free_port(), started
    for forwarder in started:
        forwarder.close()


def status(project: Path) -> dict[str, Any]:
    answer = playbookd("status", "--format", "json", cwd=project)
    assert answer.returncode == 0, answer.stderr
    return dict(json.loads(answer.stdout))


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read()


def test_the_daemon_retries_a_source_whose_database_is_down_until_it_is_up(
        tmp_path: Path, db_url: str, pg_url: str, forwarder_port: tuple[int, list[Forwarder]]) -> None:
    port, forwarders = forwarder_port
    assert playbookd("init", "project", "--accounts", "20", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    with (project / "data" / "accounts.csv").open() as accounts_csv:
        first = next(csv.DictReader(accounts_csv))["id"]
    source_db = create_engine(pg_url)
    with source_db.begin() as conn:
        conn.execute(text("CREATE TABLE app_sessions (account_id text, seen_at timestamptz)"))
        conn.execute(text("INSERT INTO app_sessions VALUES (:id, :at)"), {"id": first, "at": SEEN})
    source_db.dispose()
    listen = f"127.0.0.1:{free_port()}"
    usage = {"name": "usage", "kind": "sql", "entity": "accounts", "every": "3s",
             "url": pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}") + "&connect_timeout=3",
             "query": "SELECT account_id AS id, max(seen_at) AS last_seen_at FROM app_sessions GROUP BY 1"}
    config = yaml.safe_load((project / "config.yaml").read_text())
    edit_config(project, database=db_url, sources=[*config["sources"], usage], http={"listen": listen},
                logging={"format": "json", "level": "info"})
    daemon = Daemon(project)
    try:
        daemon.wait_for("start", lambda: "started" in daemon.messages())
        daemon.wait_for("two failed syncs of usage", lambda: (status(project)["sources"].get("usage") or {})
                        .get("attempts", 0) >= 2, timeout=90)
        state = status(project)["sources"]["usage"]
        assert state["ok"] is False and state["last_success"] is None and state["next_retry"]
        assert "Connection refused" in state["last_error"]
        code, body = get(f"http://{listen}/healthz")
        health = json.loads(body)
        assert (code, health["status"], health["sources_failing"]) == (200, "ok", ["usage"])
        assert health["sources"]["crm_accounts"]["ok"] is True  # the other sources still sync
        _, metrics = get(f"http://{listen}/metrics")
        assert 'playbookd_source_failing{source="usage"} 1.0' in metrics.decode()
        errors = [e for e in daemon.events() if e["level"] == "error" and e.get("source") == "usage"]
        # the whole error, psycopg's hint on its second line included
        assert errors and "Is the server running on that host" in errors[-1]["msg"]
        text_status = playbookd("status", cwd=project).stdout
        assert "usage=FAILING" in text_status and "Sources that could not be read" in text_status

        forwarders.append(Forwarder(port, ("127.0.0.1", 5432)))
        daemon.wait_for("usage synced", lambda: status(project)["sources"]["usage"]["ok"], timeout=60)
        state = status(project)["sources"]["usage"]
        assert (state["attempts"], state["next_retry"]) == (0, None) and state["last_success"]
        store = connect(db_url)
        with store.connect() as conn:
            data = conn.execute(select(accounts.c.data).where(accounts.c.id == first)).scalar_one()
        store.dispose()
        assert data["last_seen_at"].startswith("2026-03-01T09:30")
        _, body = get(f"http://{listen}/healthz")
        assert json.loads(body)["sources_failing"] == []
        assert daemon.proc.poll() is None
    finally:
        stopped = daemon.stop()
    assert stopped == 0
