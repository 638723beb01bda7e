"""Signed unsubscribe tokens: they name a contact and a category and cannot be forged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets

from sqlalchemy import Connection, select

from playbookd.model.addresses import lookup_form
from playbookd.store.database import insert_ignore, utcnow
from playbookd.store.schema import state

SECRET_ENV = "PLAYBOOKD_SECRET"
_KEY = "unsubscribe_secret"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Strict: the decoder alone ignores stray characters and the unused low bits of the last one,
    so several spellings would decode alike and an altered token could still verify."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not canonical unpadded base64url")
    return data


def sign(secret: bytes, email: str, category: str) -> str:
    payload = b64url(json.dumps([lookup_form(email), category], separators=(",", ":")).encode())
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{b64url(mac)}"


def verify(secret: bytes, token: str) -> tuple[str, str] | None:
    """(email, category) for a genuine token, None for anything forged or altered. The address in its
    canonical form, so a token signed before addresses were normalised suppresses the right one."""
    try:
        payload, mac = token.split(".", 1)
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(expected, unb64url(mac)):
            return None
        email, category = json.loads(unb64url(payload))
    except (ValueError, TypeError):
        return None
    return (lookup_form(email), category) if isinstance(email, str) and isinstance(category, str) else None


def known_secret(conn: Connection, configured: str | None) -> bytes | None:
    """Config, else environment, else the secret kept in the store; None when none is kept yet."""
    if configured:
        return configured.encode()
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode()
    row = conn.execute(select(state.c.value).where(state.c.key == _KEY)).first()
    return None if row is None else str(row.value).encode()


def resolve_secret(conn: Connection, configured: str | None) -> bytes:
    """Config, else environment, else a random secret generated once and kept in the store."""
    found = known_secret(conn, configured)
    if found is not None:
        return found
    # several replicas may race here: the first insert wins and everyone re-reads it
    insert_ignore(conn, state, [{"key": _KEY, "value": secrets.token_urlsafe(32), "updated_at": utcnow()}])
    return str(conn.execute(select(state.c.value).where(state.c.key == _KEY)).scalar_one()).encode()


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"
