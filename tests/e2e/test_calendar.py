"""Calendar playbooks and looking ahead/back, end to end on SQLite and PostgreSQL: a monthly schedule
through full cycles (once per occurrence, skipped while still enrolled, missed occurrences merged
or recorded), replicas opening one occurrence once, and `calendar` agreeing with what is then sent."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cli_helpers import json_lines, playbookd
from sqlalchemy import select

from playbookd.engine import ranges
from playbookd.service.daemon import Daemon
from playbookd.store.database import connect
from playbookd.store.schema import audit, calendar_runs, enrollments, outbox

ACCOUNTS = ("id,name,annual_revenue,status,plan,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,maria@acme.example\n"
            "ACC-2,Pine Labs,5000,active,basic,maria@acme.example\n"
            "ACC-3,Gone Inc,5000,churned,basic,maria@acme.example\n")
CONTACTS = ("account_id,email,first_name,role,status,timezone\n"
            "ACC-1,ana@harbor.example,Ana,admin,active,America/Chicago\n"
            "ACC-2,pia@pine.example,Pia,admin,active,Asia/Tokyo\n"
            "ACC-2,pat@pine.example,Pat,champion,active,Europe/Paris\n"
            "ACC-3,gus@gone.example,Gus,admin,active,UTC\n")
MONTHLY = """\
id: monthly
trigger: {schedule: "0 9 1 * *", when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
"""


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def project_with(make: Any, db_url: str, playbooks: dict[str, str], **config: Any) -> Any:
    return make(playbooks, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS, database=db_url, **config)


def entries(project: Any) -> list[tuple[str, datetime]]:
    return [(r.account_id, r.entered_at.replace(tzinfo=UTC)) for r in project.rows(enrollments)]


def test_a_monthly_schedule_enters_every_matching_account_once_per_occurrence(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"monthly": MONTHLY})
    for moment in (at(1, 31, 12), at(2, 1, 8, 59)):
        project.run(moment)
    assert entries(project) == []
    project.run(at(2, 1))
    project.run(at(2, 1, 9, 15))
    project.run(at(2, 14))
    assert entries(project) == [("ACC-1", at(2, 1)), ("ACC-2", at(2, 1))]  # not the churned one
    project.run(at(3, 1, 9, 5))
    assert [a for a, when in entries(project) if when == at(3, 1, 9, 5)] == ["ACC-1", "ACC-2"]
    assert project.emails().count("login_nudge.html.j2") == 4
    assert len(project.rows(calendar_runs)) == 2


def test_missed_occurrences_merge_into_one_run_within_catch_up_and_never_run_twice(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"monthly": MONTHLY})
    project.run(at(3, 1))
    project.run(at(5, 1, 20))  # down through April 1st; back 11 hours after May 1st's occurrence
    project.run(at(5, 2))
    assert [when for _, when in entries(project)] == [at(3, 1)] * 2 + [at(5, 1, 20)] * 2
    runs = [(r.occurrence.replace(tzinfo=UTC), r.state, r.merged) for r in project.rows(calendar_runs)]
    assert runs == [(at(3, 1), "run", 0), (at(5, 1), "run", 1)]
    project.run(at(7, 3))  # June and July missed, July 1st past its catch_up of 1d: nobody enters
    project.run(at(7, 4))
    assert len(entries(project)) == 4
    (missed,) = project.rows(audit, audit.c.event == "calendar_missed")
    assert missed.detail["occurrence"] == at(7, 1).isoformat() and missed.detail["merged"] == 1
    project.run(at(8, 1))
    assert len(entries(project)) == 6


def test_an_account_still_enrolled_from_the_previous_occurrence_is_skipped(make: Any, db_url: str) -> None:
    long = MONTHLY + "  - wait: 45d\n  - email: {template: login_nudge_short, to: admin}\n"
    project = project_with(make, db_url, {"monthly": long})
    project.run(at(2, 1))
    project.run(at(3, 1))
    assert len(entries(project)) == 2  # still enrolled from February: March is skipped
    project.run(at(3, 18))  # 45 days on: the second email, and the enrollments complete
    project.run(at(4, 1))
    assert [when for _, when in entries(project)] == [at(2, 1)] * 2 + [at(4, 1)] * 2


def test_replicas_open_one_occurrence_once(make: Any, pg_url: str) -> None:
    project = project_with(make, pg_url, {"monthly": MONTHLY})
    project.run(at(1, 15))  # the first sync
    engines = [connect(pg_url) for _ in range(3)]
    errors: list[BaseException] = []

    def replica(engine: Any, moment: datetime) -> None:
        try:  # each as a leader would after a failover: plan (opening due occurrences), then work
            ranges.plan(engine, moment, 1, project.runtime)
            ranges.work(project.runtime, engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(engine, at(2, 1) + timedelta(seconds=i)))
               for i, engine in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert len(project.rows(calendar_runs)) == 1
    assert sorted(a for a, _ in entries(project)) == ["ACC-1", "ACC-2"]


def test_the_daemon_evaluates_at_each_occurrence_and_a_reload_drops_a_removed_schedule(make: Any) -> None:
    project = make({"monthly": MONTHLY}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS)
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    daemon.scheduler.start()
    try:
        daemon.schedule()
        assert "calendar:monthly" in daemon.scheduler.jobs()
        upcoming = daemon.scheduler.next_run("calendar:monthly")
        assert upcoming is not None and (upcoming.day, upcoming.hour, upcoming.minute) == (1, 9, 0)
        (project.path / "playbooks" / "monthly.yaml").unlink()
        daemon.reload()
        assert "calendar:monthly" not in daemon.scheduler.jobs()
    finally:
        daemon.scheduler.shutdown(wait=True)


NUDGE = """\
id: nudge
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 10d
  - task: {title: "call {{ account.name }}", assign: csm}
  - email: {template: login_nudge_short, to: [admin, champion]}
"""


def test_calendar_agrees_with_what_the_daemon_then_sends(make: Any, db_url: str) -> None:
    quiet = {"quiet_hours": {"start": "20:00", "end": "08:00"}}
    project = project_with(make, db_url, {"monthly": MONTHLY, "nudge": NUDGE}, delivery=quiet)
    start = at(1, 25, 12)
    project.run(start)  # nudge enters now and sends at once where it is not night
    result = playbookd("calendar", "--at", start.isoformat(), "--days", "40", "--format", "json", cwd=project.path)
    assert result.returncode == 0, result.stderr
    plan = json_lines(result.stdout)
    emails = sorted((e["to"], e["template"], e["at"]) for e in plan if e["action"] == "email")
    assert {e["playbook"] for e in plan} == {"monthly", "nudge"} and len(emails) == 7
    assert [e["at"] for e in plan] == sorted(e["at"] for e in plan)
    moments = sorted({datetime.fromisoformat(e["at"]) for e in plan} | {at(2, 3), at(2, 20), at(3, 1)})
    first = {r.id for r in project.rows(outbox)}
    for moment in moments:
        project.run(moment)
    sent = sorted((r.to_addr, r.template, r.sent_at.replace(tzinfo=UTC).isoformat())
                  for r in project.rows(outbox) if r.id not in first)
    assert [r.state for r in project.rows(outbox) if r.id not in first] == ["sent"] * len(sent)
    assert sent == emails
    # the newsletter to Tokyo went out at 08:00 in Tokyo, not at 09:00 UTC (18:00 there is fine) ...
    assert ("pia@pine.example", "tech_touch/login_nudge.html.j2", at(2, 1).isoformat()) in sent
    # ... and Chicago's 03:00 waited for 08:00 there
    assert ("ana@harbor.example", "tech_touch/login_nudge.html.j2", at(2, 1, 14).isoformat()) in sent


def test_explain_history_and_outbox_give_one_account_and_one_person(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"monthly": MONTHLY, "nudge": NUDGE},
                           delivery={"quiet_hours": {"start": "20:00", "end": "08:00"}})
    project.run(at(1, 25, 12))
    project.run(at(1, 26, 0))  # 09:00 in Tokyo: Pia's first email goes
    explained = playbookd("explain", "ACC-2", "--at", at(1, 25, 13).isoformat(), "--format", "json",
                          cwd=project.path)
    assert explained.returncode == 0, explained.stderr
    report = json.loads(explained.stdout)
    calendar = playbookd("calendar", "--account", "ACC-2", "--at", at(1, 25, 13).isoformat(), "--format", "json",
                         cwd=project.path)
    assert report["upcoming"] == json_lines(calendar.stdout) != []
    assert {u["playbook"] for u in report["upcoming"]} == {"monthly", "nudge"}
    verdict = next(p["verdict"] for p in report["playbooks"] if p["playbook"] == "monthly")
    assert "next occurrence of its schedule, 2026-02-01T09:00:00+00:00" in verdict
    person = playbookd("history", "--contact", "PIA@pine.example", cwd=project.path)
    lines = person.stdout.splitlines()
    assert person.returncode == 0 and lines and all("contact=pia@pine.example" in line for line in lines)
    assert any("queued" in line for line in lines) and any("sent" in line for line in lines)
    mail = playbookd("outbox", "list", "--account", "ACC-1", cwd=project.path)
    rows = mail.stdout.splitlines()[1:]
    assert rows and all("ACC-1" in row for row in rows) and not any("ACC-2" in row for row in rows)


@pytest.mark.parametrize("days", ["-1", "400"])
def test_calendar_refuses_a_window_it_cannot_show(make: Any, days: str) -> None:
    project = make({"monthly": MONTHLY}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS)
    assert playbookd("calendar", "--days", days, cwd=project.path).returncode == 2


def test_calendar_of_an_unknown_account_says_so(make: Any) -> None:
    project = make({"monthly": MONTHLY}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS)
    project.run(at(1, 2))
    result = playbookd("calendar", "--account", "ACC-9", cwd=project.path)
    assert result.returncode == 1 and "account 'ACC-9' is not in the store" in result.stderr


def test_calendar_json_keys(make: Any) -> None:
    project = make({"nudge": NUDGE}, accounts_csv=ACCOUNTS, contacts_csv=CONTACTS)
    project.run(at(1, 25, 12))
    result = playbookd("calendar", "--at", at(1, 25, 12).isoformat(), "--format", "json", cwd=project.path)
    (line, *_) = json_lines(result.stdout)
    assert list(line) == ["at", "account", "segment", "playbook", "step", "action", "template", "detail", "to",
                          "due_at", "why"]
    with project.engine.connect() as conn:
        assert conn.execute(select(outbox.c.id)).first() is not None


def test_a_paused_calendar_playbook_opens_no_occurrence_and_its_control_group_gets_nothing(make: Any,
                                                                                           db_url: str) -> None:
    project = project_with(make, db_url, {"monthly": MONTHLY.replace("steps:", "control: 10%\nsteps:")})
    project.run(at(1, 31, 12))
    assert playbookd("playbooks", "pause", "monthly", cwd=project.path).returncode == 0
    project.run(at(2, 1))
    assert entries(project) == [] and project.rows(calendar_runs) == []
    ahead = playbookd("calendar", "--at", at(2, 1, 1).isoformat(), "--days", "40", "--format", "json",
                      cwd=project.path)
    assert ahead.returncode == 0 and json_lines(ahead.stdout) == []  # paused: nothing comes
    assert playbookd("playbooks", "resume", "monthly", cwd=project.path).returncode == 0
    project.run(at(2, 1, 20))  # resumed within catch_up: February's occurrence runs now
    groups = {r.account_id: r.group_name for r in project.rows(enrollments)}
    assert groups == {"ACC-1": "control", "ACC-2": "treatment"}  # fixed by a hash of (playbook, account)
    treated = ["ACC-2"]
    assert sorted({r.account_id for r in project.rows(outbox)}) == treated
    ahead = playbookd("calendar", "--at", at(2, 1, 21).isoformat(), "--days", "40", "--format", "json",
                      cwd=project.path)
    march = [line for line in json_lines(ahead.stdout) if line["why"] == f"occurrence {at(3, 1).isoformat()}"]
    assert sorted({line["account"] for line in march}) == treated  # the control group gets no step
