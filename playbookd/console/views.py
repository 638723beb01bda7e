"""The console's pages and actions, and the Starlette application that routes to them."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, time
from typing import Any
from urllib.parse import quote

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from playbookd.cadence.preview import render_for
from playbookd.config.durations import format_duration
from playbookd.console import account_data, actions, ops_data, playbook_data
from playbookd.console.app import (
    EMAIL_CSP,
    STATIC,
    Console,
    Refused,
    answer,
    first,
    is_browser,
    read_form,
    same_origin,
)
from playbookd.console.auth import COOKIE, LOGIN_COOKIE, Session
from playbookd.console.tables import Link, Table, href, to_csv
from playbookd.console.users import check_password, warm
from playbookd.errors import ConflictError, UserError
from playbookd.store import audit
from playbookd.store.database import transaction, utcnow

log = logging.getLogger("playbookd.console")
CSV_ROWS = 10_000  # a CSV download holds this many rows of a paged table, from the page asked for
Page = Callable[[Request, Session], Awaitable[Response]]


def page_of(request: Request, table_id: str) -> int:
    value = request.query_params.get(f"page_{table_id}", "1")
    return max(int(value), 1) if value.isdigit() and len(value) < 9 else 1


class Views:
    def __init__(self, console: Console) -> None:
        self.c = console
        warm()

    # -- plumbing ---------------------------------------------------------------------------------

    def size(self, request: Request) -> int:
        return CSV_ROWS if "csv" in request.query_params else self.c.settings.page_size

    def guard(self, handler: Page, act: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Login first; for a POST the CSRF token and the origin; for an action the operator role."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await run_in_threadpool(self.c.session, request)
                if session is None:
                    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                    return RedirectResponse(f"/console/login?next={target}", 303)
                if request.method == "POST":
                    form = await read_form(request)
                    if not same_origin(request) or not self.c.signer.csrf_ok(session.sid, first(form, "csrf")):
                        raise Refused(403, "the form's security token is missing or wrong: reload the page")
                    request.state.form = form
                if act and not session.can_act:
                    raise Refused(403, f"{session.user} is a viewer: this needs the operator role")
                return await handler(request, session)
            except Refused as exc:
                return self.c.render(request, "error.html.j2", exc.status, title="Not allowed" if exc.status == 403
                                     else "Not accepted", message=exc.message, session=None)
            except UserError as exc:
                return self.c.render(request, "error.html.j2", 404, title="Not found", message=str(exc),
                                     session=None)
            except SQLAlchemyError:
                log.exception("console page failed on the store")
                return self.c.render(request, "error.html.j2", 503, title="Try again", session=None,
                                     message="the store could not be reached just now")

        return endpoint

    def show(self, request: Request, session: Session, template: str, title: str,
             tables: dict[str, Table], **context: Any) -> Response:
        """The page, or one of its tables as CSV when `?csv=<table id>` asks for it."""
        wanted = request.query_params.get("csv")
        if wanted is not None:
            table = tables.get(wanted)
            if table is None:
                raise Refused(404, f"no table {wanted!r} on this page")
            return answer(200, to_csv(table).encode(), "text/csv; charset=utf-8",
                          {"Content-Disposition": f'attachment; filename="{table.id}.csv"'})
        return self.c.render(request, template, title=title, session=session, tables=tables, **context)

    def act(self, session: Session, action: str, **what: Any) -> None:
        with transaction(self.c.engine) as conn:
            audit.record(conn, "console_action", reason=action, detail={"user": session.user, **what})

    # -- login ------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = self.c.render(request, "login.html.j2", title="Log in", next=_next(request),
                                 login_csrf=self.c.signer.csrf(f"login:{nonce}"))
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/console/login", httponly=True,
                            samesite="strict", secure=self.c.tls(request))
        return response

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except Refused as exc:
            return self.c.render(request, "error.html.j2", exc.status, title="Not accepted", message=exc.message)
        name, password = first(form, "username").strip(), first(form, "password")
        token, nonce = first(form, "csrf"), request.cookies.get(LOGIN_COOKIE, "")
        # a browser's login must carry the form's token; a script (no Origin, Referer or Sec-Fetch-*)
        # cannot be made to log someone in by another site, so it may post the two fields alone
        if (token or is_browser(request)) and not (same_origin(request) and nonce
                                                   and self.c.signer.csrf_ok(f"login:{nonce}", token)):
            return self.c.render(request, "error.html.j2", 403, title="Not allowed",
                                 message="the login form's security token is missing or wrong: reload the page")
        address = request.client.host if request.client else "?"
        keys = [f"user:{name.lower()}", f"address:{address}"]
        if self.c.throttle.blocked(keys):
            minutes = max(round(self.c.settings.login_window.total_seconds() / 60), 1)
            return self._login_again(request, 429, f"too many failed logins: try again in up to {minutes} min")
        user = await run_in_threadpool(check_password, self.c.settings.users_file, name, password)
        if user is None:
            self.c.throttle.fail(keys)
            log.warning("console login failed", extra={"user": name[:100], "client": address})
            return self._login_again(request, 401, "wrong user name or password")
        self.c.throttle.clear(keys[0])
        cookie, _ = self.c.signer.issue(user, self.c.settings.session_minutes)
        log.info("console login", extra={"user": user.name, "client": address})
        response = RedirectResponse(_next_from(first(form, "next")), 303)
        response.set_cookie(COOKIE, cookie, max_age=self.c.settings.session_minutes * 60, path="/console",
                            httponly=True, samesite="strict", secure=self.c.tls(request))
        return response

    def _login_again(self, request: Request, status: int, problem: str) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
        response = self.c.render(request, "login.html.j2", status, title="Log in", problem=problem,
                                 next="/console/", login_csrf=self.c.signer.csrf(f"login:{nonce}"))
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/console/login", httponly=True,
                            samesite="strict", secure=self.c.tls(request))
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
        return response

    async def home(self, request: Request, session: Session) -> Response:
        return RedirectResponse("/console/playbooks", 303)

    # -- playbooks --------------------------------------------------------------------------------

    async def playbooks(self, request: Request, session: Session) -> Response:
        table = await run_in_threadpool(playbook_data.overview, self.c.runtime(), self.c.engine, utcnow())
        return self.show(request, session, "playbooks.html.j2", "Playbooks", {table.id: table})

    async def playbook(self, request: Request, session: Session) -> Response:
        pid = request.path_params["playbook_id"]
        found = await run_in_threadpool(playbook_data.page, self.c.runtime(), self.c.engine, pid, utcnow())
        tables = {t.id: t for t in (found.funnel, found.totals, found.groups, found.comparisons)}
        report = self.c.runtime().config.report
        return self.show(request, session, "playbook.html.j2", f"Playbook {pid}", tables, p=found,
                         action=href("playbooks", pid), refresh_every=format_duration(report.refresh_every),
                         live_under=report.live_under)

    async def playbook_status(self, request: Request, session: Session) -> Response:
        pid = request.path_params["playbook_id"]
        action = first(request.state.form, "action")
        rt = self.c.runtime()
        try:
            said = await run_in_threadpool(actions.set_playbook, rt.config, self.c.engine, pid, action,
                                           session.user, utcnow())
        except UserError as exc:
            raise Refused(400, str(exc)) from None
        return RedirectResponse(href("playbooks", pid) + "?" + _notice(said), 303)

    # -- accounts ---------------------------------------------------------------------------------

    async def accounts(self, request: Request, session: Session) -> Response:
        q = request.query_params.get("q", "")[:200]
        table = await run_in_threadpool(account_data.search, self.c.engine, q, page_of(request, "accounts"),
                                        self.size(request))
        return self.show(request, session, "accounts.html.j2", "Accounts", {table.id: table}, q=q)

    async def account(self, request: Request, session: Session) -> Response:
        aid = request.path_params["account_id"]
        pages = {name: page_of(request, name) for name in ("emails", "timeline")}
        rt = self.c.runtime()
        found = await run_in_threadpool(account_data.page, rt, self.c.engine, aid, utcnow(), pages,
                                        self.size(request))
        tables = {t.id: t for t in (found.fields, found.enrollments, found.coming, found.emails, found.tasks,
                                    found.timeline)}
        return self.show(request, session, "account.html.j2", f"Account {aid}", tables, a=found,
                         template_names=sorted(rt.templates.names()),
                         playbook_href=lambda p: href("playbooks", p),
                         template_href=lambda name: href("templates", name, account=aid))

    # -- templates --------------------------------------------------------------------------------

    async def templates(self, request: Request, session: Session) -> Response:
        account = request.query_params.get("account", "")[:200]
        table = Table("templates", ("template", "segment versions"))
        rt = self.c.runtime()
        for name in sorted(rt.templates.names()):
            link = href("templates", name, account=account) if account else href("templates", name)
            versions = {s: rt.templates.resolve(name, s).partition("/")[0] for s in rt.config.segment_names}
            table.rows.append((Link(name, link), ", ".join(f"{s}: {folder}" for s, folder in versions.items())))
        return self.show(request, session, "templates.html.j2", "Templates", {table.id: table}, account=account)

    def _rendered(self, request: Request) -> tuple[Any, str]:
        rt = self.c.runtime()
        name = request.path_params["name"]
        if name not in rt.templates.names():
            raise UserError(f"no template {name!r}")
        account = request.query_params.get("account", "")
        if not account:
            raise Refused(400, "choose an account to render the template for")
        segment = request.query_params.get("segment") or None
        contact = request.query_params.get("contact") or None
        try:
            return render_for(rt, self.c.engine, name, account, contact, segment)
        except UserError:
            raise
        except Exception as exc:  # a template that fails for this account: shown, as `preview` would say it
            raise Refused(422, f"{name} cannot be rendered for {account}: {exc}") from None

    async def template(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        params = dict(request.query_params)
        context: dict[str, Any] = {"account": params.get("account", ""), "segment": params.get("segment", ""),
                                   "contact": params.get("contact"), "rendered": None, "to": None,
                                   "segments": self.c.runtime().config.segment_names, "html_src": ""}
        if context["account"]:
            context["rendered"], context["to"] = await run_in_threadpool(self._rendered, request)
            query = {k: v for k, v in params.items() if k in ("account", "segment", "contact") and v}
            context["html_src"] = href("templates", name, "html", **query)
        return self.show(request, session, "template.html.j2", f"Template {name}", {}, **context)

    async def template_html(self, request: Request, session: Session) -> Response:
        rendered, _ = await run_in_threadpool(self._rendered, request)
        return answer(200, rendered.html.encode(), "text/html; charset=utf-8", csp=EMAIL_CSP)

    # -- tasks and outbox -------------------------------------------------------------------------

    async def tasks(self, request: Request, session: Session) -> Response:
        state = request.query_params.get("state", "open")
        state = state if state in ops_data.TASK_STATES else "open"
        assignee = request.query_params.get("assignee") or None
        overview = await run_in_threadpool(ops_data.assignees, self.c.engine, state)
        queue = await run_in_threadpool(ops_data.queue, self.c.engine, state, assignee, page_of(request, "tasks"),
                                        self.size(request))
        return self.show(request, session, "tasks.html.j2", "Tasks", {overview.id: overview, queue.id: queue},
                         state=state, assignee=assignee, states=ops_data.TASK_STATES, notice=_flash(request))

    async def task_action(self, request: Request, session: Session) -> Response:
        form = request.state.form
        ids = _ids(form)
        until = _day(first(form, "until"))
        try:
            said = await run_in_threadpool(actions.change_tasks, self.c.runtime().config, self.c.engine, ids,
                                           first(form, "action"), session.user, until=until,
                                           assignee=first(form, "assignee") or None, note=first(form, "note") or None)
        except ConflictError as exc:
            raise Refused(409, str(exc)) from None
        except UserError as exc:
            raise Refused(400, str(exc)) from None
        return RedirectResponse("/console/tasks?" + _notice(said), 303)

    async def outbox(self, request: Request, session: Session) -> Response:
        state = request.query_params.get("state", "unknown")
        state = state if state in ops_data.DECIDE else "unknown"
        counts = await run_in_threadpool(ops_data.outbox_counts, self.c.engine)
        messages = await run_in_threadpool(ops_data.waiting, self.c.engine, state, page_of(request, "messages"),
                                           self.size(request))
        return self.show(request, session, "outbox.html.j2", "Outbox", {counts.id: counts, messages.id: messages},
                         state=state, states=ops_data.DECIDE, notice=_flash(request))

    async def outbox_action(self, request: Request, session: Session) -> Response:
        form = request.state.form
        try:
            said = await run_in_threadpool(actions.decide_messages, self.c.engine, _ids(form), first(form, "action"),
                                           session.user)
        except UserError as exc:
            raise Refused(400, str(exc)) from None
        state = first(form, "state") if first(form, "state") in ops_data.DECIDE else "unknown"
        return RedirectResponse(f"/console/outbox?state={state}&" + _notice(said), 303)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name != "console.css":  # the one file there is; nothing else is served from disk
            return self.c.render(request, "error.html.j2", 404, title="Not found", message="no such file")
        body = (STATIC / name).read_bytes()
        return answer(200, body, "text/css; charset=utf-8", {"Cache-Control": "max-age=3600"})

    async def missing(self, request: Request) -> Response:
        return self.c.render(request, "error.html.j2", 404, title="Not found", message="There is nothing here.")


def _ids(form: dict[str, list[str]]) -> list[int]:
    values = form.get("id", [])
    if not all(v.isdigit() and len(v) < 19 for v in values):
        raise Refused(400, "ids are numbers")
    return [int(v) for v in values]


def _day(text: str) -> datetime | None:
    try:
        return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(9)).astimezone() if text else None
    except ValueError:
        raise Refused(400, f"{text!r} is not a date (YYYY-MM-DD)") from None


def _notice(text: str) -> str:
    return "notice=" + quote(text[:300])


def _flash(request: Request) -> str | None:
    return request.query_params.get("notice")


def _next(request: Request) -> str:
    return _next_from(request.query_params.get("next", ""))


def _next_from(target: str) -> str:
    """Only back into the console: `next` must not send a person to another site after login."""
    return target if target.startswith("/console/") and not target.startswith("//") and "\\" not in target \
        else "/console/"


def build(console: Console) -> Starlette:
    """The console's routes, relative to its mount point /console."""
    v = Views(console)
    g = v.guard
    routes = [
        Route("/login", v.login_form, methods=["GET"]),
        Route("/login", v.login, methods=["POST"]),
        Route("/logout", g(v.logout), methods=["POST"]),
        Route("/static/{name}", v.static, methods=["GET"]),
        Route("/", g(v.home), methods=["GET"]),
        Route("/playbooks", g(v.playbooks), methods=["GET"]),
        Route("/playbooks/{playbook_id}", g(v.playbook), methods=["GET"]),
        Route("/playbooks/{playbook_id}", g(v.playbook_status, act=True), methods=["POST"]),
        Route("/accounts", g(v.accounts), methods=["GET"]),
        Route("/accounts/{account_id:path}", g(v.account), methods=["GET"]),
        Route("/templates", g(v.templates), methods=["GET"]),
        Route("/templates/{name}/html", g(v.template_html), methods=["GET"]),
        Route("/templates/{name}", g(v.template), methods=["GET"]),
        Route("/tasks", g(v.tasks), methods=["GET"]),
        Route("/tasks", g(v.task_action, act=True), methods=["POST"]),
        Route("/outbox", g(v.outbox), methods=["GET"]),
        Route("/outbox", g(v.outbox_action, act=True), methods=["POST"]),
    ]
    routes.append(Route("/{rest:path}", v.missing))
    return Starlette(routes=routes)


def mount(console: Console) -> Mount:
    return Mount("/console", app=build(console))

