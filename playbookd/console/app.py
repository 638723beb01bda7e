"""The console as an ASGI application (Starlette), mounted at /console by the daemon's HTTP app or
served alone on `console.listen`: who may see a page, who may act, and the headers every answer has.

Every page needs a session (a signed cookie from /console/login, or a trusted proxy's headers); a
POST needs the session's CSRF token and, from a browser, an Origin of this host; an action needs the
operator role. No answer carries an inline script or style: the CSP forbids them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import Engine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from playbookd.config.console import Console as ConsoleSettings
from playbookd.console import tables
from playbookd.console.auth import COOKIE, Session, Signer, Throttle, proxy_session, trusted
from playbookd.runtime import Runtime

log = logging.getLogger("playbookd.console")
STATIC = Path(__file__).with_name("static")
MAX_FORM = 16 * 1024
FORM_SECONDS = 10.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; frame-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
# the rendered email, in an iframe: its own inline styles and remote images, never a script
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; font-src https:; "
             "frame-ancestors 'self'; sandbox")
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


class Refused(Exception):
    """An answer other than the page: a status and a message shown on the error page."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def environment() -> Environment:
    env = Environment(loader=PackageLoader("playbookd.console", "templates"), autoescape=select_autoescape(
        ["html", "j2"], default=True), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = tables.cell
    env.tests["link"] = lambda value: isinstance(value, tables.Link)
    return env


@dataclass
class Console:
    """What the pages need, kept narrow: the store, the runtime as it is now (it changes on reload),
    the installation secret (sessions and CSRF keys derive from it)."""

    engine: Engine
    runtime: Callable[[], Runtime]
    secret: bytes
    signer: Signer = field(init=False)
    throttle: Throttle = field(init=False)
    env: Environment = field(default_factory=environment)

    def __post_init__(self) -> None:
        self.signer = Signer(self.secret)
        window = self.settings.login_window.total_seconds()
        self.throttle = Throttle(self.settings.max_failed_logins, window)

    @property
    def settings(self) -> ConsoleSettings:
        return self.runtime().config.console

    def from_proxy(self, request: Request) -> bool:
        return trusted(request.client.host if request.client else None, self.settings.trusted_proxies)

    def tls(self, request: Request) -> bool:
        forwarded = request.headers.get("x-forwarded-proto", "").lower() == "https" and self.from_proxy(request)
        return self.settings.secure_cookies == "always" or request.url.scheme == "https" or forwarded

    def session(self, request: Request) -> Session | None:
        settings = self.settings
        if settings.auth == "proxy":
            if not self.from_proxy(request):
                raise Refused(403, "console.auth is proxy: requests must come through a trusted proxy")
            return proxy_session(request.headers.get(settings.proxy_user_header),
                                 request.headers.get(settings.proxy_role_header))
        return self.signer.read(request.cookies.get(COOKIE), settings.users_file)

    def csrf(self, session: Session) -> str:
        return self.signer.csrf(session.sid)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        query = dict(request.query_params)

        def csv_query(table_id: str) -> str:
            return _encode({**query, "csv": table_id})

        def page_query(table_id: str, page: int) -> str:
            return _encode({**query, f"page_{table_id}": str(page)})

        context.setdefault("session", None)
        context.setdefault("notice", None)
        context.setdefault("problem", None)
        if context["session"] is not None:
            context.setdefault("csrf", self.csrf(context["session"]))
        text = self.env.get_template(template).render(csv_query=csv_query, page_query=page_query, **context)
        return answer(status, text.encode(), "text/html; charset=utf-8")


def _encode(query: dict[str, str]) -> str:
    return urlencode(query)


def answer(status: int, body: bytes, media_type: str, headers: dict[str, str] | None = None,
           csp: str = CSP) -> Response:
    return Response(body, status, {**HEADERS, "Content-Security-Policy": csp, "X-Frame-Options": "DENY"
                                   if csp == CSP else "SAMEORIGIN", **(headers or {})}, media_type=media_type)


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form of at most MAX_FORM bytes, arrived within FORM_SECONDS."""
    body = bytearray()
    try:
        async with asyncio.timeout(FORM_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_FORM:
                    raise Refused(413, f"the form is over {MAX_FORM} bytes", {"Connection": "close"})
    except TimeoutError:
        raise Refused(408, "the form did not arrive in time", {"Connection": "close"}) from None
    except ClientDisconnect:
        raise Refused(400, "the client closed the connection before the end of the form") from None
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from (Origin, else Referer); another site's page is refused."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    return urlsplit(source).netloc == request.headers.get("host", "")


def is_browser(request: Request) -> bool:
    return any(name in request.headers for name in ("origin", "referer", "sec-fetch-site"))


Handler = Callable[[Request, Session], Awaitable[Response]]


def first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]

