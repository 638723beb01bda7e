"""Every command imports the console's user module (the CLI's `console` group); importing it must
not hash a password: an argon2 hash costs about half a second of CPU, which `run --once` paid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from playbookd.console import users

COUNT_HASHES = """
import argon2
calls = []
real = argon2.PasswordHasher.hash
argon2.PasswordHasher.hash = lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
import playbookd.cli.commands
print(len(calls))
"""


def test_importing_the_cli_hashes_no_password() -> None:
    done = subprocess.run([sys.executable, "-c", COUNT_HASHES], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_an_unknown_name_is_still_checked_against_a_hash(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    users.add_user(path, "ana", "operator", "correct horse")
    assert users.check_password(path, "ana", "correct horse") is not None
    assert users.check_password(path, "nobody", "correct horse") is None
    assert users._dummy().startswith("$argon2id$")  # what the unknown name was verified against
