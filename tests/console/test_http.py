"""The console over real HTTP on loopback: login, sessions, CSRF, roles, audit, headers, CSV, escaping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import OPERATOR, VIEWER, Client, copy_project, loaded, make_project, text_of
from http_helpers import serving
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from playbookd.console.app import Console
from playbookd.console.views import mount
from playbookd.service import http
from playbookd.store.schema import accounts, audit, outbox, tasks

SECRET = b"console-test-secret"
HOSTILE = '<img src=x onerror=alert(1)>"Evil & Co'


@pytest.fixture(scope="module")
def template_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("console"))


@pytest.fixture
def project(template_project: Path, tmp_path: Path) -> Path:
    return copy_project(template_project, tmp_path / "project")


@pytest.fixture
def served(project: Path) -> Iterator[tuple[str, Engine]]:
    rt, engine = loaded(project)
    assert isinstance(engine, Engine)
    site = http.Site(engine, SECRET, "Acme", lambda: http.health(engine),
                     console=mount(Console(engine, lambda: rt, SECRET)))
    with serving(site) as url:
        yield url, engine


@pytest.fixture
def url(served: tuple[str, Engine]) -> str:
    return served[0]


@pytest.fixture
def engine(served: tuple[str, Engine]) -> Engine:
    return served[1]


def first_account(engine: Engine) -> str:
    """An account that was sent email."""
    with engine.connect() as conn:
        return str(conn.execute(select(outbox.c.account_id).order_by(outbox.c.id).limit(1)).scalar_one())


def entries(engine: Engine, event: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit).where(audit.c.event == event)))


def test_console_is_off_by_default(project: Path) -> None:
    _, engine = loaded(project)
    assert isinstance(engine, Engine)
    with serving(http.Site(engine, SECRET, "Acme", lambda: http.health(engine))) as base:
        assert Client(base).get("/console/login").status == 404
        assert Client(base).get("/healthz").status == 200


def test_every_page_needs_a_login(url: str) -> None:
    for path in ("/console/", "/console/accounts/ACC-000001", "/console/playbooks/no-login-7d", "/console/tasks",
                 "/console/outbox", "/console/templates/login_nudge?account=ACC-000001"):
        reply = Client(url).get(path)
        assert reply.status == 303 and reply.location is not None
        assert reply.location.startswith("/console/login?next=")
    assert Client(url).get("/console/login").status == 200


def test_login_sets_a_strict_http_only_session_cookie(url: str) -> None:
    client = Client(url)
    reply = client.login(OPERATOR)
    assert reply.status == 303 and reply.location == "/console/"
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert "Playbooks" in text_of(client.get("/console/playbooks").body)


def test_cookie_is_secure_behind_a_tls_proxy(url: str) -> None:
    client = Client(url)
    token = client.token("/console/login")
    reply = client.send("/console/login", {"csrf": token, "username": OPERATOR[0], "password": OPERATOR[1]},
                        {"Origin": url, "X-Forwarded-Proto": "https"})
    assert reply.status == 303 and "Secure" in reply.headers["set-cookie"]


def test_a_script_may_post_the_two_fields_but_a_browser_needs_the_token(url: str) -> None:
    assert Client(url).send("/console/login", {"username": VIEWER[0], "password": VIEWER[1]}).status == 303
    forged = Client(url).send("/console/login", {"username": VIEWER[0], "password": VIEWER[1]},
                              {"Origin": "http://evil.example"})
    assert forged.status == 403


def test_wrong_passwords_are_throttled_per_user(url: str) -> None:
    client = Client(url)
    for _ in range(5):
        reply = client.send("/console/login", {"username": OPERATOR[0], "password": "wrong"})
        assert reply.status == 401 and "wrong user name or password" in reply.body
    refused = client.send("/console/login", {"username": OPERATOR[0], "password": OPERATOR[1]})
    assert refused.status == 429 and "too many failed logins" in refused.body


def test_pages_show_what_a_csm_needs(url: str, engine: Engine) -> None:
    client = Client(url)
    client.login(VIEWER)
    account = first_account(engine)
    with engine.connect() as conn:
        subjects = [r.subject for r in conn.execute(select(outbox.c.subject).where(outbox.c.account_id == account))]
        segment = conn.execute(select(accounts.c.segment).where(accounts.c.id == account)).scalar_one()
    page = text_of(client.get(f"/console/accounts/{account}").body)
    assert account in page and segment in page
    assert all(subject in page for subject in subjects)
    assert "Why, playbook by playbook" in page and "Timeline" in page
    playbook = text_of(client.get("/console/playbooks/no-login-7d").body)
    assert "Funnel by step" in playbook and "id: no-login-7d" in playbook and "Comparisons" in playbook
    preview = client.get(f"/console/templates/login_nudge?account={account}")
    assert preview.status == 200 and "Subject" in text_of(preview.body)
    html = client.get(f"/console/templates/login_nudge/html?account={account}")
    assert html.status == 200 and "sandbox" in html.headers["content-security-policy"]
    assert client.get(f"/console/accounts?q={account}").body.count(account) >= 1
    assert "By assignee" in text_of(client.get("/console/tasks").body)
    assert "Messages by state" in text_of(client.get("/console/outbox").body)


def test_the_account_page_says_what_comes_next_as_the_calendar_does(url: str, engine: Engine, project: Path) -> None:
    import csv
    import io

    from playbookd.engine.calendar import upcoming
    from playbookd.store.database import utcnow
    from playbookd.store.schema import enrollments

    rt, _ = loaded(project)
    with engine.connect() as conn:
        active = conn.execute(select(enrollments.c.account_id).where(enrollments.c.state == "active")).scalars().all()
    coming = next(((a, u) for a in active if (u := upcoming(rt, engine, utcnow(), 14, a))), None)
    assert coming is not None, "some active enrollment has a step due within 14 days"
    account, expected = coming
    client = Client(url)
    client.login(VIEWER)
    reply = client.get(f"/console/accounts/{account}?csv=coming")
    rows = list(csv.DictReader(io.StringIO(reply.body)))
    assert [(r["playbook"], int(r["step"]), r["action"]) for r in rows] == [
        (u.playbook, u.step + 1, u.action) for u in expected]
    assert "Coming next" in text_of(client.get(f"/console/accounts/{account}").body)


def test_headers_forbid_inline_code_and_framing(url: str) -> None:
    client = Client(url)
    client.login(VIEWER)
    reply = client.get("/console/playbooks")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert reply.headers["x-frame-options"] == "DENY" and reply.headers["cache-control"] == "no-store"
    for path in ("/console/playbooks", "/console/playbooks/no-login-7d", "/console/tasks", "/console/outbox",
                 "/console/accounts/ACC-000001"):
        body = client.get(path).body
        assert "<script" not in body and "style=" not in body and "<style" not in body


def test_hostile_account_data_is_escaped(url: str, engine: Engine) -> None:
    account = first_account(engine)
    with engine.begin() as conn:
        data = conn.execute(select(accounts.c.data).where(accounts.c.id == account)).scalar_one()
        conn.execute(update(accounts).where(accounts.c.id == account).values(data={**data, "name": HOSTILE}))
    client = Client(url)
    client.login(VIEWER)
    for path in (f"/console/accounts/{account}", f"/console/accounts?q={account}"):
        body = client.get(path).body
        assert "<img src=x" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body


def test_every_table_downloads_as_csv(url: str, engine: Engine) -> None:
    client = Client(url)
    client.login(VIEWER)
    reply = client.get("/console/outbox?csv=outbox-states")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    assert reply.body.splitlines()[0] == "state,messages" and "sent" in reply.body
    timeline = client.get(f"/console/accounts/{first_account(engine)}?csv=timeline")
    assert timeline.body.splitlines()[0] == "at,event,playbook,step,contact,reason,detail"
    assert client.get("/console/playbooks?csv=nope").status == 404


def fail_one_message(engine: Engine) -> int:
    with engine.begin() as conn:
        message = conn.execute(select(outbox.c.id).order_by(outbox.c.id)).scalars().first()
        conn.execute(update(outbox).where(outbox.c.id == message).values(state="failed", last_error="550 test"))
    assert message is not None
    return int(message)


def test_a_post_without_the_csrf_token_is_refused(url: str, engine: Engine) -> None:
    message = fail_one_message(engine)
    client = Client(url)
    client.login(OPERATOR)
    reply = client.send("/console/outbox", [("action", "drop"), ("id", str(message))], {"Origin": url})
    assert reply.status == 403 and "security token" in reply.body
    wrong = client.send("/console/outbox", [("csrf", "x" * 43), ("action", "drop"), ("id", str(message))])
    assert wrong.status == 403
    assert entries(engine, "operator_drop") == []


def test_a_viewer_cannot_act(url: str, engine: Engine) -> None:
    message = fail_one_message(engine)
    client = Client(url)
    client.login(VIEWER)
    reply = client.post("/console/outbox", [("action", "drop"), ("id", str(message))], "/console/outbox")
    assert reply.status == 403 and "operator role" in reply.body
    assert client.post("/console/playbooks/no-login-7d", [("action", "pause")],
                       "/console/playbooks/no-login-7d").status == 403
    assert entries(engine, "operator_drop") == []


def test_an_operator_acts_and_the_audit_log_names_them(url: str, engine: Engine) -> None:
    message = fail_one_message(engine)
    client = Client(url)
    client.login(OPERATOR)
    reply = client.post("/console/outbox", [("action", "resend"), ("id", str(message)), ("state", "failed")],
                        "/console/outbox?state=failed")
    assert reply.status == 303
    [entry] = entries(engine, "operator_resend")
    assert entry.detail["user"] == OPERATOR[0] and entry.detail["outbox_id"] == message
    paused = client.post("/console/playbooks/no-login-7d", [("action", "pause")], "/console/playbooks/no-login-7d")
    assert paused.status == 303
    assert "paused" in text_of(client.get("/console/playbooks").body)
    [action] = entries(engine, "console_action")
    assert action.detail["user"] == OPERATOR[0] and action.reason == "pause"


def test_an_operator_closes_a_task_as_the_cli_would_and_a_second_close_is_refused(url: str, engine: Engine) -> None:
    with engine.connect() as conn:
        task = conn.execute(select(tasks.c.id).where(tasks.c.state == "open")).scalars().first()
    assert task is not None, "the project's cycle created tasks"
    client = Client(url)
    client.login(OPERATOR)
    assert f'value="{task}" form="task-actions"' in client.get("/console/tasks").body
    reply = client.post("/console/tasks", [("action", "done"), ("id", str(task)), ("note", "called them")],
                        "/console/tasks")
    assert reply.status == 303
    with engine.connect() as conn:
        assert conn.execute(select(tasks.c.state).where(tasks.c.id == task)).scalar_one() == "done"
    [entry] = entries(engine, "task_done")
    assert entry.detail["user"] == OPERATOR[0] and entry.reason == "called them" and entry.detail["task"] == task
    assert f'value="{task}" form="task-actions"' not in client.get("/console/tasks").body
    again = client.post("/console/tasks", [("action", "snooze"), ("id", str(task)), ("until", "2099-01-01")],
                        "/console/tasks")
    assert again.status == 400 and f"task {task}" in again.body and "nothing was changed" in again.body


def test_logout_and_a_removed_user_end_the_session(url: str, project: Path) -> None:
    from playbookd.config.settings import load_config
    from playbookd.console.users import remove_user

    client = Client(url)
    client.login(VIEWER)
    assert client.get("/console/tasks").status == 200
    remove_user(load_config(project / "config.yaml").console.users_file, VIEWER[0])
    assert client.get("/console/tasks").status == 303


def test_the_playbook_page_shows_the_numbers_of_playbookd_report(url: str, engine: Engine, project: Path) -> None:
    import csv
    import io

    from playbookd.report.results import Scope, report

    rt, _ = loaded(project)
    client = Client(url)
    client.login(VIEWER)
    checked = 0
    for playbook in rt.playbooks:
        result = report(engine, Scope(playbook=playbook.id), {playbook.id: playbook.goal is not None})[0]
        path = f"/console/playbooks/{playbook.id}"
        totals = {r["measure"]: r["value"] for r in csv.DictReader(io.StringIO(client.get(f"{path}?csv=report").body))}
        assert totals["entered"] == str(result.entered)
        assert {k: int(v) for k, v in totals.items() if k.startswith("state ")} == {
            f"state {k}": v for k, v in result.states.items()}
        assert {k: int(v) for k, v in totals.items() if k.startswith("emails ")} == {
            f"emails {k}": v for k, v in result.emails.items()}
        assert totals["met at entry"] == str(result.met_at_entry)
        groups = list(csv.DictReader(io.StringIO(client.get(f"{path}?csv=groups").body)))
        assert [(g["group"], int(g["entered"]), int(g["goal met"]), int(g["emails sent"])) for g in groups] == [
            (g.name, g.entered, g.goal_met, g.emails_sent) for g in result.ordered_groups()]
        checked += result.entered > 0 and bool(result.emails)
    assert checked, "some playbook has enrollments and email"
