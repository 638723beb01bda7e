"""Who is asking: signed session cookies, CSRF tokens, failed-login throttling, trusted proxies.

A session is a cookie holding (user, role, expiry, session id, a fingerprint of the password hash),
signed with HMAC-SHA256 under a key derived from the installation secret: no session table, yet
a session ends when it expires, when the user is removed or their role changes, or when their
password changes. CSRF tokens are HMACs of the session id, so every form of a session carries one
and no other session's token is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from playbookd.console.users import User, read_users

COOKIE = "playbookd_console"
LOGIN_COOKIE = "playbookd_console_login"  # before login: what the login form's CSRF token is bound to


def derive(secret: bytes, purpose: str) -> bytes:
    """A key of its own per use, so a console cookie can never pass as an unsubscribe token."""
    return hmac.new(secret, f"playbookd console {purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(user: User) -> str:
    return hashlib.sha256(user.hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    expires: float
    sid: str

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


class Signer:
    def __init__(self, secret: bytes) -> None:
        self.key = derive(secret, "session")
        self.csrf_key = derive(secret, "csrf")

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def issue(self, user: User, minutes: int, now: float | None = None) -> tuple[str, Session]:
        session = Session(user.name, user.role, (now or time.time()) + minutes * 60, secrets.token_urlsafe(16))
        body = {"u": user.name, "r": user.role, "e": int(session.expires), "s": session.sid,
                "f": fingerprint(user)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}", session

    def read(self, cookie: str | None, users_file: Path, now: float | None = None) -> Session | None:
        """The session, or None when the cookie is missing, forged, expired or its user changed."""
        payload, _, mac = (cookie or "").partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
        except ValueError:
            return None
        user = read_users(users_file).get(str(body.get("u")))
        if user is None or user.role != body.get("r") or fingerprint(user) != body.get("f"):
            return None
        if float(body.get("e", 0)) <= (now or time.time()):
            return None
        return Session(user.name, user.role, float(body["e"]), str(body["s"]))

    def csrf(self, bound_to: str) -> str:
        return _b64(hmac.new(self.csrf_key, bound_to.encode(), hashlib.sha256).digest())

    def csrf_ok(self, bound_to: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(bound_to), given or "")


class Throttle:
    """Failed logins per key (a user name, an address) within a window, in bounded memory: past
    `max_keys` the key idle longest is forgotten, so a flood of names cannot exhaust memory."""

    def __init__(self, limit: int, window_seconds: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self.failures.get(key, deque())
        while found and found[0] <= now - self.window:
            found.popleft()
        return found

    def blocked(self, keys: Sequence[str], now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        with self.lock:
            return any(len(self._recent(key, at)) >= self.limit for key in keys)

    def fail(self, keys: Sequence[str], now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        with self.lock:
            for key in keys:
                found = self._recent(key, at)
                found.append(at)
                while len(found) > self.limit:
                    found.popleft()
                self.failures[key] = found
                self.failures.move_to_end(key)
            while len(self.failures) > self.max_keys:
                self.failures.popitem(last=False)

    def clear(self, key: str) -> None:
        with self.lock:
            self.failures.pop(key, None)


def trusted(address: str | None, networks: Sequence[str]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def proxy_session(user: str | None, role: str | None) -> Session | None:
    """A session from a trusted proxy's headers; CSRF tokens are bound to the user name then."""
    if not user or len(user) > 200:
        return None
    return Session(user, role if role == "operator" else "viewer", float("inf"), f"proxy:{user}")
