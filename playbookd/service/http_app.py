"""The HTTP endpoints as an ASGI application: one-click unsubscribe, tracked links, events, health
check and metrics.

GET on an unsubscribe link only shows a confirmation page, because mail scanners and link
previews fetch every URL in a message; the unsubscribe itself is a POST, either the one-click
POST a mailbox provider sends (`List-Unsubscribe=One-Click`) or the page's button. A forged or
altered token gets the same plain refusal whatever was wrong with it.

Bodies are counted as they arrive, whatever Content-Length says (or whether it is there at
all): past the cap the answer is 413 and nothing more is read; a body that has not all arrived
within `body_seconds` is a 408. Both close the connection. Work that touches the database runs
in the thread pool (40 threads at most), never on the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from playbookd.delivery import clicks
from playbookd.delivery.unsubscribe import verify
from playbookd.errors import ConflictError, UserError
from playbookd.service import metrics
from playbookd.store import audit
from playbookd.store.database import insert_ignore, transaction, utcnow
from playbookd.store.schema import suppressions
from playbookd.sync import events

log = logging.getLogger("playbookd.http")
MAX_BODY = 4096
MAX_EVENTS_BODY = 1 << 20
MAX_JSON_DEPTH = 32  # a batch of events with their data needs a handful; 100,000 is an attack
CLOSE = {"Connection": "close"}  # after a refused body: whatever the client still sends is not read
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#111827}}
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:0;background:#1d4ed8;color:#fff}}</style>
</head><body><h1>{title}</h1>{body}</body></html>"""
NOT_FOUND = "<p>There is nothing here.</p>"


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
    """What the handlers need from the daemon, kept narrow so the listener can run on its own in tests."""

    def __init__(self, engine: Engine, secret: bytes, company: str, healthy: Callable[[], dict[str, Any]],
                 events_token: str | None = None, on_events: Callable[[], None] = lambda: None,
                 scan_seconds: float = 10.0, console: Any = None, console_only: bool = False) -> None:
        self.engine = engine
        self.secret = secret
        self.company = company
        self.healthy = healthy
        self.events_token = events_token
        self.on_events = on_events
        self.scan_seconds = scan_seconds
        self.console = console  # the console's routes (a Mount at /console), or None: off
        self.console_only = console_only  # a listener of the console's own (console.listen)


def send(status: int, content_type: str, payload: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(payload, status, {"Cache-Control": "no-store", **(headers or {})}, media_type=content_type)


def page(status: int, title: str, body: str, headers: dict[str, str] | None = None) -> Response:
    return send(status, "text/html; charset=utf-8", PAGE.format(title=html.escape(title), body=body).encode(),
                headers)


def answer(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return send(status, "application/json", json.dumps(payload, default=str).encode(), headers)


def refused(request: Request, exc: Exception) -> Response:
    """Every HTTPException (no route, wrong method, body refused), in the endpoint's own format."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if request.url.path == "/events":
        return answer(exc.status_code, {"error": exc.detail}, headers)
    if exc.status_code == 404:
        return page(404, "Not found", NOT_FOUND, headers)
    return page(exc.status_code, "Not accepted", f"<p>{html.escape(exc.detail)}.</p>", headers)


async def read_body(request: Request, cap: int, seconds: float) -> bytes:
    """The whole body, or HTTPException: 413 as soon as it passes `cap` (a declared length over the
    cap is refused before reading), 408 when it has not all arrived within `seconds`."""
    declared = request.headers.get("content-length", "")  # uvicorn refused one that is not a number
    too_large = HTTPException(413, f"the body is over {cap} bytes; send less per request", CLOSE)
    body = bytearray()
    try:
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > cap:
                    raise too_large
    except TimeoutError:
        metrics.HTTP_CUT.labels("slow_body").inc()
        raise HTTPException(408, f"the body did not arrive within {seconds:g} s", CLOSE) from None
    except HTTPException:
        metrics.HTTP_CUT.labels("too_large").inc()
        raise
    except ClientDisconnect:
        raise HTTPException(400, "the client closed the connection before the end of the body", CLOSE) from None
    return bytes(body)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON or a database can store")


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest, counted without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            stack += [(item, level + 1) for item in (value.values() if isinstance(value, dict) else value)]
    return deepest


def decode(body: bytes) -> Any:
    """The JSON document, or UserError naming what is wrong with it."""
    too_deep = f"not acceptable JSON: nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        document = json.loads(body or b"null", parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise UserError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # the parser's own depth limit, far past ours
        raise UserError(too_deep) from None
    except ValueError as exc:  # NaN or Infinity, invalid UTF-8, an integer of more than 4,300 digits
        raise UserError(f"not acceptable JSON: {exc}") from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise UserError(too_deep)
    return document


class Endpoints:
    def __init__(self, site: Site, body_seconds: float) -> None:
        self.site = site
        self.body_seconds = body_seconds

    async def health(self, _request: Request) -> Response:
        return await run_in_threadpool(self._health)

    def _health(self) -> Response:
        try:
            report = self.site.healthy()
            status = 200 if report["status"] == "ok" else 503
        except SQLAlchemyError as exc:
            report, status = {"status": "unavailable", "error": type(exc).__name__}, 503
        return answer(status, report)

    async def metrics(self, _request: Request) -> Response:
        return send(200, METRICS_TYPE, await run_in_threadpool(metrics.exposition, self.site.engine))

    def _token(self, request: Request) -> tuple[str, str]:
        token = verify(self.site.secret, request.path_params["token"])
        if token is None:
            raise HTTPException(404)
        return token

    async def confirm(self, request: Request) -> Response:
        email, category = self._token(request)
        body = (f"<p>Stop sending {html.escape(category_label(category))} to {html.escape(mask(email))}?</p>"
                f'<form method="post"><button type="submit" name="confirm" value="1">Unsubscribe</button></form>'
                f"<p><small>From {html.escape(self.site.company)}.</small></p>")
        return page(200, "Unsubscribe", body)

    async def unsubscribe(self, request: Request) -> Response:
        email, category = self._token(request)
        form = parse_qs((await read_body(request, MAX_BODY, self.body_seconds)).decode("utf-8", "replace"))
        how = "one_click" if form.get("List-Unsubscribe") == ["One-Click"] else "link"
        try:
            await run_in_threadpool(unsubscribe, self.site.engine, email, category, how)
        except SQLAlchemyError:
            log.exception("unsubscribe could not be stored")
            return page(503, "Please try again", "<p>We could not record that just now. Please retry.</p>")
        log.info("unsubscribed", extra={"category": category, "how": how})
        return page(200, "You are unsubscribed",
                    f"<p>{html.escape(mask(email))} will get no more {html.escape(category_label(category))}.</p>")

    async def click(self, request: Request) -> Response:
        """A tracked link: recorded (as a click, or as scanned) and redirected to the URL the token
        signs. Only a genuine token redirects anywhere; a failing store does not keep anyone from
        the page they asked for."""
        link = clicks.verify(self.site.secret, request.path_params["token"])
        if link is None:
            raise HTTPException(404)
        key, index, url = link
        agent = request.headers.get("user-agent", "")
        try:
            kind = await run_in_threadpool(self._record_click, key, index, url, request.method, agent)
            metrics.CLICKS.labels(kind or "unknown_message").inc()
        except SQLAlchemyError:
            log.exception("a click could not be stored")
        return send(302, "text/plain; charset=utf-8", b"", {"Location": url, "Referrer-Policy": "no-referrer"})

    def _record_click(self, key: str, index: int, url: str, method: str, agent: str) -> str | None:
        with transaction(self.site.engine) as conn:
            return clicks.record(conn, key, index, url, method, agent, utcnow(), self.site.scan_seconds)

    async def events(self, request: Request) -> Response:
        expected = self.site.events_token
        if not expected:
            return answer(404, {"error": "POST /events is off: set http.events_token"})
        given = request.headers.get("Authorization", "").encode("latin-1")
        if not hmac.compare_digest(given, f"Bearer {expected}".encode()):
            return answer(401, {"error": "missing or wrong bearer token"})
        body = await read_body(request, MAX_EVENTS_BODY, self.body_seconds)
        return await run_in_threadpool(self._store_events, body)

    def _store_events(self, body: bytes) -> Response:
        try:
            document = decode(body)
            recorded = events.record(self.site.engine, document if isinstance(document, list) else [document])
        except ConflictError as exc:
            return answer(409, {"error": str(exc)})
        except UserError as exc:
            return answer(400, {"error": str(exc)})
        except SQLAlchemyError:
            log.exception("events could not be stored")
            return answer(503, {"error": "could not store the events; retry"})
        self.site.on_events()
        return answer(202, {"accepted": recorded.added, "duplicates": recorded.duplicates})


def build(site: Site, body_seconds: float) -> Starlette:
    console = [site.console] if site.console is not None else []
    if site.console_only:
        return Starlette(routes=console, exception_handlers={HTTPException: refused})
    endpoints = Endpoints(site, body_seconds)
    return Starlette(routes=[*console,
        Route("/healthz", endpoints.health),
        Route("/metrics", endpoints.metrics),
        Route("/events", endpoints.events, methods=["POST"]),
        Route("/c/{token}", endpoints.click, methods=["GET", "HEAD"]),
        Route("/unsubscribe/{token}", endpoints.confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", endpoints.unsubscribe, methods=["POST"]),
    ], exception_handlers={HTTPException: refused})
