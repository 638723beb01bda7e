"""A stop is honoured mid-render, and no worker process outlives the daemon: a template loop driven by
a synced number spins in a render worker, then SIGTERM (or kill -9) reaches the real daemon."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import free_port

SPIN = ('---\nsubject: "Seats at {{ account.name }}"\n---\n{% extends "_layouts/base.html.j2" %}\n{% block body %}'
        "{% for i in range(account.seats_purchased or 0) %}{% for j in range(account.seats_purchased or 0) %}"
        "{% endfor %}{% endfor %}<p>Seats.</p>{% endblock %}\n")
PLAYBOOK = ("id: seats\ntrigger: {when: {seats_purchased: {gt: 99999}}}\n"
            "steps:\n  - email: {template: seats, to: admin}\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert playbookd("init", "project", "--accounts", "20", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    for playbook in (project / "playbooks").iterdir():
        playbook.unlink()
    (project / "playbooks" / "seats.yaml").write_text(PLAYBOOK)
    (project / "email_templates" / "default" / "seats.html.j2").write_text(SPIN)
    accounts = project / "data" / "accounts.csv"
    lines = accounts.read_text().splitlines()
    column = lines[0].split(",").index("seats_purchased")
    cells = lines[1].split(",")
    cells[column] = "100000"  # ten billion turns of the inner loop
    lines[1] = ",".join(cells)
    accounts.write_text("\n".join(lines) + "\n")
    port = free_port()
    edit_config(project, exit_when=None, http={"listen": f"127.0.0.1:{port}"},
                company={"public_url": f"http://127.0.0.1:{port}"},
                limits={"render_seconds": 3600}, logging={"format": "json", "level": "info"})
    return project


def enrolled(project: Path) -> bool:
    try:
        with sqlite3.connect(project / "playbookd.db") as conn:
            return bool(conn.execute("SELECT count(*) FROM enrollments").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return False


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except FileNotFoundError:
                continue
            todo += list(children - found)
            found |= children
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100  # clock ticks: USER_HZ is 100 on Linux


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def spinning(project: Path) -> Iterator[tuple[Daemon, set[int]]]:
    daemon = Daemon(project)
    try:
        daemon.wait_for("the enrollment whose email spins", lambda: enrolled(project), timeout=120)
        time.sleep(3)  # its first step is rendering by now: ten billion turns take hours
        children = descendants(daemon.proc.pid)
        assert any(cpu_seconds(pid) > 1 for pid in children), "no render worker is spinning"
        yield daemon, children
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def gone(pids: set[int], seconds: float = 15) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return {pid for pid in pids if alive(pid)}


def test_sigterm_mid_render_exits_promptly_and_leaves_no_worker(spinning: tuple[Daemon, set[int]]) -> None:
    daemon, children = spinning
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=15) == 0, daemon.log_text()
    assert gone(children) == set()
    messages = daemon.messages()
    assert messages[-1] == "stopped"
    assert any("stopped mid-job" in m for m in messages)


def test_kill_9_mid_render_leaves_no_worker(spinning: tuple[Daemon, set[int]]) -> None:
    daemon, children = spinning
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=15)
    assert gone(children) == set(), "a worker outlived the daemon"
