"""The systemd unit (verify, security rating) and the notify protocol spoken by the real daemon."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, edit_config, playbookd
from smtp_server import free_port

from playbookd.service.notify import Notifier

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "playbookd.service"
ANALYZE = shutil.which("systemd-analyze")


def installed_unit(tmp_path: Path) -> Path:
    """The unit as an admin installs it, ExecStart pointing at this environment's playbookd."""
    executable = Path(sys.executable).parent / "playbookd"
    unit = tmp_path / "playbookd.service"
    unit.write_text(UNIT.read_text().replace("/opt/playbookd/bin/playbookd", str(executable)))
    return unit


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run([ANALYZE, "verify", str(installed_unit(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "playbookd.service" not in result.stderr, result.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_unit_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run([ANALYZE, "security", "--offline=true", str(installed_unit(tmp_path))],
                            capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_declares_the_service_contract() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "RestartPreventExitStatus=1", "DynamicUser=yes", "StateDirectory=playbookd", "WatchdogSec="):
        assert line in text


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    yield sock, path
    sock.close()


def next_message(sock: socket.socket, *, skip: str = "WATCHDOG=1") -> list[str]:
    while True:  # bounded by the socket timeout
        fields = sock.recv(4096).decode().split("\n")
        if fields != [skip]:
            return fields


def test_daemon_notifies_ready_watchdog_reloading_stopping(tmp_path: Path,
                                                           notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert playbookd("init", "project", "--accounts", "30", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, http={"listen": f"127.0.0.1:{free_port()}"}, logging={"format": "json"})
    daemon = Daemon(project, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        assert next_message(sock)[0] == "READY=1"
        assert sock.recv(4096) == b"WATCHDOG=1"
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = next_message(sock)
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert next_message(sock)[0] == "READY=1"
        daemon.proc.send_signal(signal.SIGTERM)
        assert next_message(sock)[0] == "STOPPING=1"
        assert daemon.proc.wait(timeout=60) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()


def test_notifier_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready()  # no socket, no error


def test_abstract_socket_names_are_translated() -> None:
    assert Notifier("@playbookd/notify").address == "\0playbookd/notify"
