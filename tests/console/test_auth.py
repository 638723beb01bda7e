"""Sessions expire and are tamper-proof; the throttle's memory is bounded; users need a good name."""

from __future__ import annotations

from pathlib import Path

import pytest

from playbookd.console.auth import Signer, Throttle, trusted
from playbookd.console.users import add_user, check_password, read_users
from playbookd.errors import UserError


def test_a_session_expires_and_a_forged_one_is_refused(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    add_user(users, "ana", "operator", "long enough")
    signer = Signer(b"secret")
    cookie, _ = signer.issue(read_users(users)["ana"], minutes=10, now=1000.0)
    assert signer.read(cookie, users, now=1500.0) is not None
    assert signer.read(cookie, users, now=1000.0 + 601) is None
    payload, _, mac = cookie.partition(".")
    assert signer.read(f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}", users, now=1500.0) is None
    assert Signer(b"other").read(cookie, users, now=1500.0) is None


def test_a_new_password_ends_old_sessions(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    add_user(users, "ana", "viewer", "long enough")
    signer = Signer(b"secret")
    cookie, _ = signer.issue(read_users(users)["ana"], minutes=10)
    add_user(users, "ana", "viewer", "another one")
    assert signer.read(cookie, users) is None
    assert check_password(users, "ana", "another one") is not None
    assert check_password(users, "ana", "long enough") is None
    assert check_password(users, "nobody", "long enough") is None


def test_the_users_file_is_private(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    add_user(users, "ana", "viewer", "long enough")
    assert users.stat().st_mode & 0o777 == 0o600
    with pytest.raises(UserError):
        add_user(users, "a:b", "viewer", "long enough")
    with pytest.raises(UserError):
        add_user(users, "bob", "admin", "long enough")
    with pytest.raises(UserError):
        add_user(users, "bob", "viewer", "short")


def test_the_throttle_counts_a_window_and_stays_bounded() -> None:
    throttle = Throttle(limit=3, window_seconds=60, max_keys=100)
    for _ in range(3):
        throttle.fail(["user:ana"], now=0.0)
    assert throttle.blocked(["user:ana"], now=30.0)
    assert not throttle.blocked(["user:ana"], now=61.0)
    for index in range(1000):
        throttle.fail([f"address:{index}"], now=0.0)
    assert len(throttle.failures) == 100


def test_proxies_are_trusted_by_network() -> None:
    assert trusted("127.0.0.1", ["127.0.0.1/32"])
    assert not trusted("10.0.0.5", ["127.0.0.1/32"])
    assert not trusted("not an address", ["0.0.0.0/0"])
