"""`wait: {until_task_done: true, at_most: 7d}` through full cycles: a closed task ends the wait early,
an open one holds it to at_most; on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from playbookd import runtime
from playbookd.cadence import tasks as work
from playbookd.store.schema import audit, enrollments, outbox, tasks

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
RENEWAL = """id: renewal
trigger: {when: {status: active}}
steps:
  - task: {title: "Send {{ account.name }} a status summary", assign: csm, due_in: 2d}
  - wait: {until_task_done: true, at_most: 7d}
  - email: {template: login_nudge, to: admin}
"""


def close(p: Any, action: work.Action, at: datetime) -> int:
    (task,) = p.rows(tasks)
    work.change(p.engine, [task.id], action, note="sent it", user="maria", now=at, settings=p.config.tasks)
    return int(task.id)


@pytest.mark.parametrize("action", ["done", "dismiss"])
def test_closing_the_task_ends_the_wait_at_the_next_cycle(make: Any, db_url: str, action: work.Action) -> None:
    p = make({"renewal": RENEWAL}, database=db_url)
    p.run(T0)
    assert p.rows(outbox) == [] and p.rows(enrollments)[0].next_due_at is not None
    task_id = close(p, action, T0 + timedelta(hours=1))
    p.run(T0 + timedelta(hours=2))
    assert p.emails() == ["login_nudge.html.j2"]
    (ended,) = p.rows(audit, audit.c.event == "wait_ended")
    assert (ended.reason, ended.detail, ended.step) == (f"task_{'done' if action == 'done' else 'dismissed'}",
                                                        {"task": task_id}, 1)
    assert p.rows(enrollments)[0].state == "completed"


def test_an_open_or_snoozed_task_holds_the_wait_until_at_most(make: Any, db_url: str) -> None:
    p = make({"renewal": RENEWAL}, database=db_url)
    p.run(T0)
    (task,) = p.rows(tasks)
    work.change(p.engine, [task.id], "snooze", note=None, user="maria", now=T0, settings=p.config.tasks,
                until=T0 + timedelta(days=1))
    p.run(T0 + timedelta(days=3))
    assert p.rows(outbox) == []
    p.run(T0 + timedelta(days=7, minutes=1))
    assert p.emails() == ["login_nudge.html.j2"]
    assert p.rows(audit, audit.c.event == "wait_ended") == []  # it ran its course


def test_a_reopened_task_does_not_end_the_wait(make: Any, db_url: str) -> None:
    p = make({"renewal": RENEWAL}, database=db_url)
    p.run(T0)
    task_id = close(p, "done", T0 + timedelta(hours=1))
    work.change(p.engine, [task_id], "reopen", note="not done after all", user="maria", now=T0 + timedelta(hours=1),
                settings=p.config.tasks)
    p.run(T0 + timedelta(hours=2))
    assert p.rows(outbox) == []


def test_the_wait_of_a_paused_playbook_stays_frozen_though_its_task_is_done(make: Any, db_url: str) -> None:
    p = make({"renewal": RENEWAL}, database=db_url)
    p.run(T0)
    (p.path / "playbooks" / "renewal.yaml").write_text(RENEWAL.replace("id: renewal", "id: renewal\nstatus: paused"))
    p.runtime = runtime.load(engine=p.engine, config=p.config)
    close(p, "done", T0 + timedelta(hours=1))
    p.run(T0 + timedelta(hours=2))
    assert p.rows(outbox) == [] and p.rows(audit, audit.c.event == "wait_ended") == []
