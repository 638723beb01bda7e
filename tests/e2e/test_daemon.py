"""The real daemon as a subprocess: first cycle, reloads, two-stage shutdown, unsubscribe and events over HTTP."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import SmtpServer, free_port


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skeleton")
    assert playbookd("init", "project", "--accounts", "150", cwd=root).returncode == 0
    return root / "project"


@pytest.fixture
def project(skeleton: Path, tmp_path: Path, smtp_server: SmtpServer) -> Path:
    target = tmp_path / "project"
    shutil.copytree(skeleton, target)
    port = free_port()
    edit_config(target, http={"listen": f"127.0.0.1:{port}"}, company={"public_url": f"http://127.0.0.1:{port}"},
                delivery={"transport": "smtp", "quiet_hours": None, "frequency_cap": None,
                                  "smtp": {"host": "127.0.0.1", "port": smtp_server.port}},
                scheduler={"deliver_every": "1s"}, logging={"format": "json", "level": "info"})
    return target


@pytest.fixture
def daemon(project: Path) -> Iterator[Daemon]:
    d = Daemon(project)
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def outbox_states(project: Path) -> dict[str, int]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return dict(conn.execute("select state, count(*) from outbox group by state").fetchall())


def test_first_cycle_delivers_and_sigterm_exits_cleanly(project: Path, daemon: Daemon,
                                                        smtp_server: SmtpServer) -> None:
    daemon.wait_for("first evaluation", lambda: "evaluated" in daemon.messages())
    daemon.wait_for("outbox drained", lambda: set(outbox_states(project)) == {"sent"})
    assert daemon.stop() == 0
    assert daemon.messages()[-1] == "stopped"
    states = outbox_states(project)
    assert len(smtp_server.received) == states["sent"]
    assert set(states) == {"sent"}


def test_sighup_with_a_broken_playbook_keeps_the_running_set(project: Path, daemon: Daemon) -> None:
    daemon.wait_for("start", lambda: "started" in daemon.messages())
    playbook = project / "playbooks" / "no-login-7d.yaml"
    playbook.write_text(playbook.read_text().replace("older_than: 7d", "older_than: seven days"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("refusal", lambda: any("still running the previous set" in m for m in daemon.messages()))
    assert any("no-login-7d.yaml:" in m for m in daemon.messages())
    assert daemon.proc.poll() is None
    playbook.unlink()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("reload", lambda: "reloaded" in daemon.messages())
    left = len(list((project / "playbooks").glob("*.yaml")))
    assert [e["playbooks"] for e in daemon.events() if e["msg"] == "reloaded"] == [left]
    assert daemon.stop() == 0


def test_first_signal_drains_second_cancels(project: Path, smtp_server: SmtpServer) -> None:
    edit_config(project, delivery={"rate_per_second": 2})
    daemon = Daemon(project)
    try:
        daemon.wait_for("first sends", lambda: len(smtp_server.received) >= 2)
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait_for("drain notice", lambda: any(m.startswith("stopping") for m in daemon.messages()))
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=30) == 130
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    states = outbox_states(project)
    assert states.get("queued", 0) > 0  # not yet attempted, still there for the next start
    assert states.get("sent", 0) == len(smtp_server.received)


@pytest.mark.parametrize("processes", [1, 2])  # 2: the stop reaches the sending process too
def test_drain_hands_back_unsent_messages(project: Path, smtp_server: SmtpServer, processes: int) -> None:
    edit_config(project, delivery={"rate_per_second": 2, "processes": processes})
    daemon = Daemon(project)
    daemon.wait_for("first sends", lambda: len(smtp_server.received) >= 2)
    assert daemon.stop() == 0
    states = outbox_states(project)
    assert states.get("sending", 0) == 0 and states.get("claimed", 0) == 0 and states.get("queued", 0) > 0
    assert states["sent"] == len(smtp_server.received)


def test_one_click_unsubscribe_from_a_delivered_email(project: Path, daemon: Daemon,
                                                      smtp_server: SmtpServer) -> None:
    daemon.wait_for("a delivery", lambda: len(smtp_server.received) > 0)
    message = smtp_server.received[0].message
    url = str(message["List-Unsubscribe"]).strip("<>")
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    listed = playbookd("suppress", "list", cwd=project).stdout
    assert smtp_server.received[0].recipients[0] in listed and "unsubscribed" in listed
    assert daemon.stop() == 0


def test_posted_event_starts_its_playbook_within_a_delivery_interval(project: Path, smtp_server: SmtpServer) -> None:
    # the shipped nps-response-detractor playbook reacts to nps_response events
    edit_config(project, http={"events_token": "tok3n"})
    listen = yaml.safe_load((project / "config.yaml").read_text())["http"]["listen"]
    account = (project / "data" / "accounts.csv").read_text().splitlines()[1].split(",")[0]
    daemon = Daemon(project)
    try:
        daemon.wait_for("first evaluation", lambda: "evaluated" in daemon.messages())
        body = json.dumps({"account": account, "name": "nps_response", "data": {"score": 2}}).encode()
        request = urllib.request.Request(f"http://{listen}/events", data=body, method="POST",
                                         headers={"Authorization": "Bearer tok3n"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        daemon.wait_for("the task", lambda: "NPS response of 2" in playbookd("tasks", cwd=project).stdout, timeout=30)
        assert account in playbookd("tasks", cwd=project).stdout
    finally:
        assert daemon.stop() == 0
