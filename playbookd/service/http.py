"""The daemon's HTTP listener: one-click unsubscribe (RFC 8058), events, health check and metrics.

GET on an unsubscribe link only shows a confirmation page, because mail scanners and link
previews fetch every URL in a message; the unsubscribe itself is a POST, either the one-click
POST a mailbox provider sends (`List-Unsubscribe=One-Click`) or the page's button. A forged or
altered token gets the same plain refusal whatever was wrong with it.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from playbookd.delivery.unsubscribe import verify
from playbookd.errors import UserError
from playbookd.service import metrics
from playbookd.store import audit, state
from playbookd.store.database import insert_ignore, transaction, utcnow
from playbookd.store.schema import suppressions
from playbookd.sync import events

log = logging.getLogger("playbookd.http")
MAX_BODY = 4096
READ_SECONDS = 10
MAX_EVENTS_BODY = 1 << 20
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#111827}}
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:0;background:#1d4ed8;color:#fff}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""


def mask(email: str) -> str:
    """Enough to recognise your own address, not enough to harvest someone else's."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'*' * max(len(local) - 1, 2)}@{domain}"


def category_label(category: str) -> str:
    return "all email from us" if category == "*" else f"{category.replace('_', ' ')} emails"


def unsubscribe(engine: Engine, email: str, category: str, how: str) -> None:
    """Idempotent: a second click finds the suppression already there."""
    with transaction(engine) as conn:
        added = insert_ignore(conn, suppressions, [{"email": email, "category": category, "reason": "unsubscribed",
                                                    "note": how, "created_at": utcnow()}])
        if added:
            audit.record(conn, "unsubscribed", contact=email, reason=how, detail={"category": category})


class Site:
    """What the handler needs from the daemon, kept narrow so the listener can run on its own in tests."""

    def __init__(self, engine: Engine, secret: bytes, company: str, healthy: Callable[[], dict[str, Any]],
                 events_token: str | None = None, on_events: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.secret = secret
        self.company = company
        self.healthy = healthy
        self.events_token = events_token
        self.on_events = on_events


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "playbookd"
    sys_version = ""
    timeout = READ_SECONDS  # a client that stops sending (half-open, slowloris) is dropped, not waited for

    def _length(self, cap: int) -> tuple[int, int]:
        """(status, length): 400 for a Content-Length that is not a plain number ("-1", "abc"), 413
        over `cap`, else 0 and the length, so no body is read past its cap."""
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0, 0
        if not raw.strip().isdigit():
            return 400, 0
        length = int(raw)
        return (413, 0) if length > cap else (0, length)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            return self._health()
        if self.path == "/metrics":
            return self._send(200, METRICS_TYPE, metrics.exposition(self.server.site.engine))
        token = self._token()
        if token is None:
            return self._page(404, "Not found", "<p>There is nothing here.</p>")
        email, category = token
        body = (f"<p>Stop sending {html.escape(category_label(category))} to {html.escape(mask(email))}?</p>"
                f'<form method="post"><button type="submit" name="confirm" value="1">Unsubscribe</button></form>'
                f"<p><small>From {html.escape(self.server.site.company)}.</small></p>")
        self._page(200, "Unsubscribe", body)

    def do_POST(self) -> None:
        if self.path == "/events":
            return self._events()
        token = self._token()
        refused, length = self._length(MAX_BODY)
        if token is None or refused:
            return self._page(refused or 404, "Not found", "<p>There is nothing here.</p>")
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        how = "one_click" if form.get("List-Unsubscribe") == ["One-Click"] else "link"
        email, category = token
        try:
            unsubscribe(self.server.site.engine, email, category, how)
        except SQLAlchemyError:
            log.exception("unsubscribe could not be stored")
            return self._page(503, "Please try again", "<p>We could not record that just now. Please retry.</p>")
        log.info("unsubscribed", extra={"category": category, "how": how})
        self._page(200, "You are unsubscribed",
                   f"<p>{html.escape(mask(email))} will get no more {html.escape(category_label(category))}.</p>")

    def _events(self) -> None:
        expected = self.server.site.events_token
        if not expected:
            return self._json(404, {"error": "POST /events is off: set http.events_token"})
        if not hmac.compare_digest(self.headers.get("Authorization", "").encode(), f"Bearer {expected}".encode()):
            return self._json(401, {"error": "missing or wrong bearer token"})
        refused, length = self._length(MAX_EVENTS_BODY)
        if refused:
            return self._json(refused, {"error": f"Content-Length must be a number up to {MAX_EVENTS_BODY} bytes; "
                                                 "send fewer events per request"})
        try:
            body = json.loads(self.rfile.read(length) or b"null", parse_constant=_no_constant)
            recorded = events.record(self.server.site.engine, body if isinstance(body, list) else [body])
        except json.JSONDecodeError as exc:
            return self._json(400, {"error": f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"})
        except (RecursionError, ValueError) as exc:  # nested past the parser's depth; NaN or Infinity
            return self._json(400, {"error": f"not acceptable JSON: {exc}"})
        except UserError as exc:
            return self._json(400, {"error": str(exc)})
        except SQLAlchemyError:
            log.exception("events could not be stored")
            return self._json(503, {"error": "could not store the events; retry"})
        self.server.site.on_events()
        self._json(202, {"accepted": recorded.added, "duplicates": recorded.duplicates})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _token(self) -> tuple[str, str] | None:
        prefix = "/unsubscribe/"
        path = self.path.split("?", 1)[0]
        if not path.startswith(prefix):
            return None
        return verify(self.server.site.secret, path[len(prefix):])

    def _health(self) -> None:
        try:
            report = self.server.site.healthy()
            status = 200 if report["status"] == "ok" else 503
        except SQLAlchemyError as exc:
            report, status = {"status": "unavailable", "error": type(exc).__name__}, 503
        self._send(status, "application/json", json.dumps(report, default=str).encode())

    def _page(self, status: int, title: str, body: str) -> None:
        self._send(status, "text/html; charset=utf-8", PAGE.format(title=html.escape(title), body=body).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a database can store")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: str, site: Site) -> None:
        host, _, port = listen.rpartition(":")
        self.site = site
        super().__init__((host.strip("[]"), int(port)), Handler)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        thread.start()
        return thread


def health(engine: Engine, failing: Mapping[str, str] = MappingProxyType({})) -> dict[str, Any]:
    """`failing`: jobs that failed their last runs, with the last error. Raises SQLAlchemyError when
    the store is unreachable; either way the check answers 503."""
    last = state.get(engine, "last_cycle") or {}
    at = last.get("at")
    age = (utcnow() - datetime.fromisoformat(at)).total_seconds() if at else None
    return {"status": "failing" if failing else "ok", "database": "reachable", "failing_jobs": dict(failing),
            "last_cycle_at": at, "last_cycle_age_seconds": None if age is None else round(age, 1)}
