"""Posting the webhooks that playbook steps queued: JSON over HTTP(S), retried with backoff.

A 2xx response settles the webhook; a 408, 429 or 5xx, a timeout or a refused connection is
retried until `delivery.max_age`; any other 4xx fails it for good (the receiver said the
request itself is wrong, so repeating it cannot help). Each request carries the queue key as
`Idempotency-Key`, so a receiver can drop the duplicate a crash between POST and settle causes.
Headers and a signature come from config (`webhooks.receivers`, `tasks.webhook`), chosen by the URL
at posting time. Redirects are not followed: they would carry those headers, and the request, to an
address nobody checked (a private one included).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, or_, select, update
from sqlalchemy.engine import Engine

from playbookd.config.settings import Config
from playbookd.delivery.backoff import backoff
from playbookd.errors import PlaybookdError
from playbookd.store import audit
from playbookd.store.database import aware, transaction, utcnow
from playbookd.store.schema import enrollments, webhooks
from playbookd.version import __version__

TIMEOUT = 10.0
RETRYABLE = {408, 425, 429}
MAX_RETRY_DELAY = timedelta(hours=1)  # a receiver that is down usually comes back within minutes
WEBHOOK_SENT, WEBHOOK_FAILED, WEBHOOK_DEFERRED = "webhook_sent", "webhook_failed", "webhook_deferred"
WEBHOOK_SKIPPED = "webhook_skipped"
TASK_KIND = "task"  # webhooks.kind of a task's change (cadence.task_events); NULL for a webhook step's
log = logging.getLogger("playbookd.webhooks")
Hold = Callable[[Connection], Sequence[str]]


@dataclass
class WebhookReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0


class WebhookError(PlaybookdError):
    """A webhook could not be posted."""


class Retry(WebhookError):
    """Worth trying again later."""


class Refused(WebhookError):
    """The receiver rejected the request; repeating it cannot help."""


@dataclass(frozen=True)
class Auth:
    """What one receiver gets besides the body: its configured headers, and a signature if it has a secret."""

    headers: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = None


NO_AUTH = Auth()
Authorise = Callable[[str, str | None], Auth]  # (url, kind) -> Auth


def signature(secret: str, body: bytes, at: int) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`: the time is signed too, so a receiver can
    refuse a captured request replayed later."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port, parts.path or "/"


def covers(prefix: str, url: str) -> bool:
    """Same scheme, host and port, and the path at or under the prefix's, whole segments only: a plain
    string prefix would hand https://crm.example.com's token to https://crm.example.com.attacker.net,
    and /tenant-a's to /tenant-ab."""
    scheme, host, port, path = _origin(prefix)
    theirs = _origin(url)
    under = theirs[3] == path or theirs[3].startswith(path if path.endswith("/") else path + "/")
    return (scheme, host, port) == theirs[:3] and under


def authoriser(config: Config) -> Authorise:
    receivers = sorted(config.webhooks.receivers, key=lambda r: len(r.url), reverse=True)
    task = config.tasks.webhook

    def choose(url: str, kind: str | None) -> Auth:
        if kind == TASK_KIND and task is not None and url == task.url:
            return Auth(task.headers, task.secret)
        found = next((r for r in receivers if covers(r.url, url)), None)
        return Auth(found.headers, found.secret) if found else NO_AUTH
    return choose


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError: refused, as any other 4xx-class answer


_OPENER = urllib.request.build_opener(_NoRedirect)


def _headers(data: bytes, key: str, auth: Auth) -> dict[str, str]:
    headers = {**auth.headers, "Content-Type": "application/json", "Idempotency-Key": key,
               "User-Agent": f"playbookd/{__version__}"}
    if auth.secret:
        headers["Playbookd-Signature"] = signature(auth.secret, data, int(time.time()))
    return headers


def post(url: str, body: Any, key: str, timeout: float = TIMEOUT, auth: Auth = NO_AUTH) -> int:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url!r}")
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=_headers(data, key, auth))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code in RETRYABLE or exc.code >= 500:
            raise Retry(f"HTTP {exc.code} {exc.reason}") from exc
        moved = f" to {exc.headers.get('Location')!r} (redirects are not followed)" if 300 <= exc.code < 400 else ""
        raise Refused(f"HTTP {exc.code} {exc.reason}{moved}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise Retry(str(getattr(exc, "reason", exc))) from exc


def _due(engine: Engine, now: datetime, limit: int, hold: Hold | None = None) -> list[Row[Any]]:
    with engine.connect() as conn:
        held = hold(conn) if hold is not None else []  # step webhooks of paused playbooks stay queued
        # a task's change is a person's, not the playbook's: it is mirrored whatever the playbook's status
        mirrored = or_(webhooks.c.kind == TASK_KIND, webhooks.c.playbook_id.not_in(held))
        query = (select(webhooks, enrollments.c.state.label("enrollment_state"))
                 .join(enrollments, enrollments.c.id == webhooks.c.enrollment_id, isouter=True)
                 .where(webhooks.c.state == "queued", webhooks.c.not_before <= now, mirrored)
                 .order_by(webhooks.c.not_before, webhooks.c.id).limit(limit))
        return list(conn.execute(query))


def _log(conn: Connection, row: Row[Any], event: str, now: datetime, **detail: Any) -> None:
    reason = detail.pop("reason", None)
    audit.record(conn, event, account_id=row.account_id, playbook_id=row.playbook_id, at=now,
                 reason=reason, detail={"url": row.url, **detail})
    if event == WEBHOOK_FAILED:
        log.warning("webhook %s to %s failed (%s): %s", row.id, row.url, reason, detail.get("error"),
                    extra={"account": row.account_id, "playbook": row.playbook_id})


def _settle(engine: Engine, row: Row[Any], error: Exception | None, now: datetime, max_age: timedelta,
            report: WebhookReport) -> None:
    attempts = row.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_error": str(error) if error else None}
    with transaction(engine) as conn:
        if error is None:
            values["state"] = "sent"
            _log(conn, row, WEBHOOK_SENT, now)
            report.sent += 1
        elif isinstance(error, Retry) and now - (aware(row.created_at) or now) < max_age:
            values["not_before"] = now + backoff(attempts, MAX_RETRY_DELAY)
            _log(conn, row, WEBHOOK_DEFERRED, now, reason="temporary_failure", error=str(error))
            report.retried += 1
        else:
            values["state"] = "failed"
            _log(conn, row, WEBHOOK_FAILED, now, reason="rejected" if isinstance(error, Refused) else "expired",
                 error=str(error))
            report.failed += 1
        conn.execute(update(webhooks).where(webhooks.c.id == row.id).values(**values))


def private_target(url: str) -> str | None:
    """The private address `url` leads to (loopback, link-local, private, reserved), else None: a
    playbook author must not make the daemon call into the network it runs in."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # unresolvable: posting fails and retries like any unreachable receiver
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            return str(address)
    return None


def _attempt(row: Row[Any], allow_private: bool, authorise: Authorise) -> Exception | None:
    try:
        if not allow_private and (address := private_target(row.url)):
            raise Refused(f"{row.url} leads to the private address {address}; set webhooks.allow_private: "
                          "true to allow it")
        post(row.url, row.body, row.key, auth=authorise(row.url, row.kind))
    except (Retry, Refused) as exc:
        return exc
    except Exception as exc:  # recorded on this row, so one bad webhook never blocks those behind it
        return Refused(f"{type(exc).__name__}: {exc}")
    return None


def _skip(engine: Engine, row: Row[Any], now: datetime, report: WebhookReport) -> None:
    """Its enrollment exited after queueing it: the receiver is told nothing."""
    with transaction(engine) as conn:
        conn.execute(update(webhooks).where(webhooks.c.id == row.id).values(state="skipped",
                                                                            last_error="enrollment_exited"))
        _log(conn, row, WEBHOOK_SKIPPED, now, reason="enrollment_exited")
    report.skipped += 1


def post_due(engine: Engine, max_age: timedelta, stop: threading.Event | None = None,
             clock: Callable[[], datetime] = utcnow, batch: int = 50, allow_private: bool = False,
             hold: Hold | None = None, authorise: Authorise = lambda url, kind: NO_AUTH) -> WebhookReport:
    """Post every webhook due now, oldest first, until none is due or `stop` is set; `hold` names the
    playbooks whose webhooks wait."""
    report = WebhookReport()
    while not (stop and stop.is_set()):
        rows = _due(engine, clock(), batch, hold)
        for row in rows:
            if stop and stop.is_set():
                break
            if row.enrollment_state == "exited" and row.kind != TASK_KIND:  # a task outlives its enrollment
                _skip(engine, row, clock(), report)
                continue
            _settle(engine, row, _attempt(row, allow_private, authorise), clock(), max_age, report)
        if len(rows) < batch:
            break
    return report
