"""Console users: one line `name:role:hash` each in `console.users_file`, hashes by argon2id.

The file is read at every login, so `playbookd console add-user` takes effect without a restart,
and written whole to a temporary file and renamed, with mode 0600, so a reader never sees half of it.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from playbookd.errors import UserError

ROLES = ("viewer", "operator")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MIN_PASSWORD = 8
_HASHER = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verifying against this when the user is unknown costs what a real check costs, so the time
    taken does not tell which names exist. Made at the first login, not at import: an argon2 hash
    costs about half a second of CPU, which every command (`run --once` included) paid before."""
    return _HASHER.hash("not a password of anyone")


def warm() -> None:
    """The console calls this as it starts, so that not even its first login's time tells."""
    _dummy()


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str = ""

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def read_users(path: Path) -> dict[str, User]:
    """Missing file: no users (nobody can log in, which is the safe default)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    found: dict[str, User] = {}
    for line in text.splitlines():
        name, _, rest = line.strip().partition(":")
        role, _, hashed = rest.partition(":")
        if name and not name.startswith("#") and role in ROLES and hashed:
            found[name] = User(name, role, hashed)
    return found


def _write(path: Path, users: dict[str, User]) -> None:
    lines = ["# playbookd console users: name:role:argon2 hash (playbookd console add-user)"]
    lines += [f"{u.name}:{u.role}:{u.hash}" for u in sorted(users.values(), key=lambda u: u.name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def add_user(path: Path, name: str, role: str, password: str) -> str:
    if not NAME.match(name):
        raise UserError(f"{name!r} is not a user name: letters, digits and . _ @ + - (up to 100)")
    if role not in ROLES:
        raise UserError(f"role {role!r}: use {' or '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    users = read_users(path)
    verb = "replaced" if name in users else "added"
    users[name] = User(name, role, _HASHER.hash(password))
    _write(path, users)
    return f"{verb} console user {name} ({role}) in {path}"


def remove_user(path: Path, name: str) -> str:
    users = read_users(path)
    if users.pop(name, None) is None:
        raise UserError(f"no console user {name!r} in {path}")
    _write(path, users)
    return f"removed console user {name} from {path}"


def check_password(path: Path, name: str, password: str) -> User | None:
    user = read_users(path).get(name)
    try:
        _HASHER.verify(user.hash if user else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    return user
