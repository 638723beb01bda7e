"""Bounces end to end: a real SMTP server refuses on purpose; suppression and the champion-left path follow."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import playbookd, small_project
from smtp_server import SmtpServer

NOW = datetime.now(UTC).replace(microsecond=0)
ACCOUNTS = ("id,name,annual_revenue,status,lifecycle_stage,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,adopted,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,is_primary\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,true\n"
            "ACC-1,cho@harbor.example,Cho,champion,active,false\n")
HELLO_CHAMPION = """\
id: hello-champion
category: product_tips
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: champion}
"""
CHAMPION_LEFT = (Path(__file__).resolve().parents[2] / "playbooks" / "champion-left.yaml").read_text()


def at(minutes: int) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def rows(project: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(project / "playbookd.db") as conn:
        return conn.execute(query).fetchall()


def test_unknown_user_suppresses_and_a_lost_champion_starts_champion_left(tmp_path: Path,
                                                                          smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["cho@harbor.example"] = "550 5.1.1 <cho@harbor.example>: user unknown"
    project = small_project(tmp_path, ACCOUNTS, CONTACTS,
                            {"hello-champion": HELLO_CHAMPION, "champion-left": CHAMPION_LEFT},
                            delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_server.port}})
    first = playbookd("run", "--once", "--at", at(0), cwd=project)
    assert first.returncode == 0, first.stderr
    assert rows(project, "select state from outbox") == [("failed",)]
    assert rows(project, "select email, category, reason from suppressions") == [
        ("cho@harbor.example", "*", "bounced")]
    assert rows(project, "select status from contacts where email = 'cho@harbor.example'") == [("bounced",)]
    second = playbookd("run", "--once", "--at", at(5), cwd=project)
    assert second.returncode == 0, second.stderr
    assert "champion has left" in playbookd("tasks", cwd=project).stdout
    welcomed = [r.recipients for r in smtp_server.received]
    assert welcomed == [["ana@harbor.example"]]  # the admin is introduced; the bounced champion gets nothing


def test_three_soft_bounces_in_a_row_suppress_the_address(tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["cho@harbor.example"] = "452 4.2.2 Mailbox full"
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"hello-champion": HELLO_CHAMPION},
                            delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_server.port}})
    for minute in (0, 10, 30):  # each past the backoff (about 1, then 2 minutes, with jitter)
        assert playbookd("run", "--once", "--at", at(minute), cwd=project).returncode == 0
    assert rows(project, "select state, attempts from outbox") == [("failed", 3)]
    assert rows(project, "select email, reason from suppressions") == [("cho@harbor.example", "bounced")]
    reasons = [r[0] for r in rows(project, "select reason from audit where contact = 'cho@harbor.example'"
                                           " and event in ('deferred', 'failed') order by id")]
    assert reasons == ["temporary_failure", "temporary_failure", "soft_bounces"]


def test_a_server_that_is_down_is_not_a_bounce(tmp_path: Path) -> None:
    from smtp_server import free_port

    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"hello-champion": HELLO_CHAMPION},
                            delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": free_port()}})
    for minute in (0, 10, 30, 90):
        assert playbookd("run", "--once", "--at", at(minute), cwd=project).returncode == 0
    assert rows(project, "select state, attempts from outbox") == [("queued", 4)]
    assert rows(project, "select count(*) from suppressions") == [(0,)]


def champion_project(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    return small_project(tmp_path, ACCOUNTS, CONTACTS, {"hello-champion": HELLO_CHAMPION},
                         delivery={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": smtp_server.port}})


@pytest.mark.parametrize("reply", ["451 4.7.1 Greylisted, try again later", "421 4.3.2 Service shutting down",
                                   "450 Requested action not taken"])
def test_greylisting_and_server_trouble_are_retried_and_never_bounce(tmp_path: Path, smtp_server: SmtpServer,
                                                                      reply: str) -> None:
    smtp_server.recorder.refuse["cho@harbor.example"] = reply
    project = champion_project(tmp_path, smtp_server)
    for minute in (0, 10, 30, 70):
        assert playbookd("run", "--once", "--at", at(minute), cwd=project).returncode == 0
    assert rows(project, "select state from outbox") == [("queued",)]
    assert rows(project, "select email from suppressions") == []
    assert rows(project, "select status from contacts where email = 'cho@harbor.example'") == [("active",)]


def test_a_relay_refusal_fails_the_message_keeps_the_contact_and_is_raised(tmp_path: Path,
                                                                          smtp_server: SmtpServer) -> None:
    smtp_server.recorder.refuse["cho@harbor.example"] = "550 5.7.1 Relaying denied"
    project = champion_project(tmp_path, smtp_server)
    assert playbookd("run", "--once", "--at", at(0), cwd=project).returncode == 0
    assert rows(project, "select state from outbox") == [("failed",)]
    assert rows(project, "select email from suppressions") == []
    assert rows(project, "select status from contacts where email = 'cho@harbor.example'") == [("active",)]
    status = playbookd("status", cwd=project).stdout
    assert "refused 1 message(s) for its policy or our setup" in status and "Relaying denied" in status
