"""Running the real `playbookd` command in a subprocess, as a user or a script would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def playbookd(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "playbookd", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def edit_config(project: Path, **changes: Any) -> None:
    """Merge `changes` into the project's config.yaml (one level of nesting is merged key by key)."""
    path = project / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class Daemon:
    def __init__(self, project: Path, env: dict[str, str] | None = None, name: str = "daemon") -> None:
        self.log = (project / f"{name}.log").open("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "playbookd", "run"], cwd=project, stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def events(self) -> list[dict[str, Any]]:
        self.log.seek(0)
        return [json.loads(line) for line in self.log.read().splitlines() if line.startswith("{")]

    def messages(self) -> list[str]:
        return [e["msg"] for e in self.events()]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # bounded: the test fails rather than hangs
            if check():
                return
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log_text()}"
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_text()}")

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


ROOT = Path(__file__).resolve().parent.parent


def small_project(tmp_path: Path, accounts_csv: str, contacts_csv: str, playbooks: dict[str, str],
                  **config: Any) -> Path:
    """A project with the shipped templates, only the given playbooks and data, and no caps or quiet hours."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(ROOT / "email_templates", project / "email_templates")
    (project / "playbooks").mkdir()
    for name, text in playbooks.items():
        (project / "playbooks" / f"{name}.yaml").write_text(text)
    (project / "data").mkdir()
    (project / "data" / "accounts.csv").write_text(accounts_csv)
    (project / "data" / "contacts.csv").write_text(contacts_csv)
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    base["delivery"].update(quiet_hours=None, frequency_cap=None, rate_per_second=1000)
    base["sources"][0]["every"] = None
    (project / "config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    edit_config(project, **config)
    return project
