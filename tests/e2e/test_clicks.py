"""Tracked links through the real daemon's HTTP listener, on SQLite and PostgreSQL: a click is recorded
once and redirects to the original URL, a forged token is refused, scanners are not clicks, and a
step's `when: {enrollment.clicked: ...}` follows the click."""

from __future__ import annotations

import http.client
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_helpers import Daemon, edit_config, json_lines, playbookd, small_project
from sqlalchemy import select

from playbookd.delivery.clicks import sign
from playbookd.store.database import connect
from playbookd.store.schema import clicks, outbox, tasks

ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example\n"
            "ACC-2,Pine Labs,5000,active,basic,adopted,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,true\n"
            "ACC-2,bo@pine.example,Bo,admin,active,true\n")
NUDGE = """\
id: nudge
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - task: {title: "{{ account.name }} ignored the email", assign: csm}
    when: {enrollment.clicked: false}
  - email: {template: login_nudge_help, to: admin}
    when: {all: [{enrollment.clicked: true}, {enrollment.emails_sent: {gte: 1}}]}
"""
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(link: str, method: str = "GET", agent: str = BROWSER) -> tuple[int, str | None]:
    """(status, Location) of one request, redirects not followed."""
    rest = link.removeprefix("http://")
    host, _, path = rest.partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(method, f"/{path}", headers={"User-Agent": agent})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        conn.close()


def answers(link: str) -> bool:
    try:
        return fetch(link)[0] == 302
    except OSError:  # the listener is not up yet
        return False


def test_a_click_is_recorded_once_redirects_and_steers_the_next_step(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    path = small_project(tmp_path, ACCOUNTS, CONTACTS, {"nudge": NUDGE}, database=db_url,
                         company={"public_url": f"http://127.0.0.1:{port}"},
                         delivery={"track_clicks": True, "scan_seconds": 3600},
                         scheduler={"evaluate_every": "1s", "sync_every": "1h", "deliver_every": "1s"},
                         http={"listen": f"127.0.0.1:{port}"}, logging={"format": "json", "level": "info"})
    engine = connect(db_url)

    def rows(table: object) -> list[object]:
        with engine.connect() as conn:
            return list(conn.execute(select(table).order_by(table.c.id)))  # type: ignore[attr-defined]

    def sent() -> dict[str, object]:
        return {r.account_id: r for r in rows(outbox) if r.state == "sent"}  # type: ignore[attr-defined]

    # 1. the daemon sends; within scan_seconds of delivery every fetch is a scanner's
    daemon = Daemon(path)
    try:
        daemon.wait_for("both emails sent", lambda: len(sent()) == 2)
        message = sent()["ACC-1"]
        tracked = re.findall(rf"http://127\.0\.0\.1:{port}/c/[A-Za-z0-9_.-]+", message.html)  # type: ignore[attr-defined]
        assert tracked, message.html  # type: ignore[attr-defined]
        assert f"http://127.0.0.1:{port}/unsubscribe/" in message.html  # type: ignore[attr-defined]
        assert "/guides/refresher\"" not in message.html and "/c/" in message.text  # type: ignore[attr-defined]
        link = tracked[0]
        status, location = fetch(link)
        assert status == 302 and location == f"http://127.0.0.1:{port}/guides/refresher"
        assert fetch(link, "HEAD")[0] == 302
        assert fetch(link, agent="Mozilla/5.0 (compatible; Mimecast-URL-Protect)")[0] == 302
        payload, mac = link.rsplit("/", 1)[1].split(".")
        forged = sign(b"a guessed secret", message.key, 0, "https://evil.example/")  # type: ignore[attr-defined]
        for bad in (f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}", f"{payload[:-2]}xx.{mac}", forged):
            status, location = fetch(f"http://127.0.0.1:{port}/c/{bad}")
            assert (status, location) == (404, None)
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    scanned = {(r.kind, r.reason) for r in rows(clicks)}  # type: ignore[attr-defined]
    assert scanned == {("scanned", "too_soon"), ("scanned", "head"), ("scanned", "scanner_agent")}

    # 2. later, a person clicks twice: one click, both redirected
    edit_config(path, delivery={"scan_seconds": 0})
    daemon = Daemon(path)
    try:
        daemon.wait_for("the listener and a first click", lambda: answers(link))
        assert fetch(link) == (302, f"http://127.0.0.1:{port}/guides/refresher")
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    clicked = [r for r in rows(clicks) if r.kind == "clicked"]  # type: ignore[attr-defined]
    assert [(r.account_id, r.contact, r.link, r.url) for r in clicked] == [  # type: ignore[attr-defined]
        ("ACC-1", "ana@harbor.example", 0, f"http://127.0.0.1:{port}/guides/refresher")]

    # 3. after the wait: ACC-1 clicked and gets the help email, ACC-2 did not and its CSM gets a task
    later = (datetime.now(UTC) + timedelta(days=3, hours=1)).isoformat()
    assert playbookd("run", "--once", "--at", later, cwd=path).returncode == 0
    templates = {(r.account_id, r.template.split("/")[-1].split(".")[0]) for r in rows(outbox)}  # type: ignore[attr-defined]
    assert ("ACC-1", "login_nudge_help") in templates and ("ACC-2", "login_nudge_help") not in templates
    assert [r.account_id for r in rows(tasks)] == ["ACC-2"]  # type: ignore[attr-defined]
    history = playbookd("history", "--account", "ACC-1", cwd=path).stdout
    assert "clicked" in history and "when_false" in history
    assert "when_false" in playbookd("history", "--account", "ACC-2", cwd=path).stdout
    (line,) = json_lines(playbookd("report", "--format", "json", cwd=path).stdout)
    (group,) = line["groups"]
    assert (group["name"], group["emailed"], group["clicked"], group["click_rate"]) == ("treatment", 2, 1, 0.5)
    engine.dispose()


def test_validate_refuses_an_unknown_enrollment_fact(tmp_path: Path) -> None:
    bad = NUDGE.replace("enrollment.clicked: false", "enrollment.clickd: false")
    path = small_project(tmp_path, ACCOUNTS, CONTACTS, {"nudge": bad}, database=f"sqlite:///{tmp_path}/db.sqlite")
    result = playbookd("validate", cwd=path)
    assert result.returncode != 0
    assert re.search(r"nudge\.yaml:7:\d+: .*unknown enrollment fact 'enrollment\.clickd'.*enrollment\.clicked",
                     result.stderr), result.stderr
