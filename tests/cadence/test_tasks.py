"""CSM tasks as work items, on a SQLite file and on PostgreSQL: who gets a task, one open task per
(playbook, account, step), and done / dismiss / snooze / reassign / reopen, all or nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from playbookd.cadence import tasks as work
from playbookd.cadence.tasks import NewTask, open_task
from playbookd.config.tasks import Tasks
from playbookd.errors import UserError
from playbookd.store.database import connect, transaction
from playbookd.store.schema import audit, enrollments, tasks

T0 = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
CALL = ("id: call\ntrigger: {when: {status: active}}\nreenter_after: 1d\nsteps:\n"
        "  - task: {title: \"Call {{ account.name }}\", assign: csm, due_in: 2d}\n")
ACCOUNTS = ("id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
            "ACC-1,Harbor Foods,5000,active,basic,adopted,Maria@Acme.example\n"
            "ACC-2,Summit Bank,150000,active,enterprise,adopted,\n"
            "ACC-3,Pine Labs,5000,active,basic,adopted,\n")
FALLBACK = {"fallback_assignee": {"high_touch": "csm-leads@acme.example", "default": "success-team@acme.example"}}


def project(make: Any, db_url: str, **config: Any) -> Any:
    return make({"call": CALL}, accounts_csv=ACCOUNTS, database=db_url, tasks=FALLBACK, **config)


def by_account(p: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for row in p.rows(tasks):
        found.setdefault(row.account_id, []).append(row)
    return found


def change(p: Any, ids: list[int], action: work.Action, at: datetime = T0, **kw: Any) -> list[work.Change]:
    return work.change(p.engine, ids, action, note=kw.pop("note", None), user=kw.pop("user", "maria"), now=at,
                       settings=p.config.tasks, **kw)


def test_a_task_goes_to_the_csm_else_to_the_fallback_of_the_account_segment(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    assignees = {account: rows[0].assignee for account, rows in by_account(p).items()}
    assert assignees == {"ACC-1": "maria@acme.example",  # the CSM, in canonical form
                         "ACC-2": "csm-leads@acme.example",  # high touch without a CSM
                         "ACC-3": "success-team@acme.example"}  # tech touch: the default


def test_without_a_fallback_a_task_of_an_account_without_csm_has_no_assignee(make: Any, db_url: str) -> None:
    p = make({"call": CALL}, accounts_csv=ACCOUNTS, database=db_url,
             tasks={"fallback_assignee": {"high_touch": "csm-leads@acme.example"}})
    p.run(T0)
    assert {a: rows[0].assignee for a, rows in by_account(p).items()}["ACC-3"] is None


def test_a_later_enrollment_refreshes_the_open_task_and_a_closed_one_lets_a_new_one_in(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    later = T0 + timedelta(days=2, hours=1)
    p.run(later)  # every account entered again (reenter_after: 1d): each task is refreshed, none added
    newest = max(r.id for r in p.rows(enrollments, enrollments.c.account_id == "ACC-1"))
    found = by_account(p)
    assert all(len(rows) == 1 for rows in found.values()), found
    task = found["ACC-1"][0]
    assert (task.state, task.refresh_count, task.revision) == ("open", 1, 2)
    assert task.refreshed_at is not None and task.due_at is not None
    refreshed, due = task.refreshed_at.replace(tzinfo=UTC), task.due_at.replace(tzinfo=UTC)
    assert (refreshed, due) == (later, later + timedelta(days=2))
    assert task.enrollment_id == newest and task.key != f"{newest}:0"  # it serves the new enrollment now
    change(p, [task.id], "done", at=later)
    p.run(later + timedelta(days=2))
    states = sorted(r.state for r in by_account(p)["ACC-1"])
    assert states == ["done", "open"]  # the closed one stays closed; the new enrollment has its own


def test_a_reassignment_by_a_person_survives_a_refresh(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    task = by_account(p)["ACC-1"][0]
    (done,) = change(p, [task.id], "reassign", assignee="Bob@Acme.example", note="Maria is out")
    assert (done.old_state, done.new_state, done.assignee) == ("open", "open", "bob@acme.example")
    p.run(T0 + timedelta(days=2))
    task = by_account(p)["ACC-1"][0]
    assert (task.assignee, task.assigned_by, task.refresh_count) == ("bob@acme.example", "maria", 1)


def test_every_change_is_audited_with_who_why_and_the_states(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    task = by_account(p)["ACC-1"][0]
    change(p, [task.id], "done", user="ana", note="called, all good")
    change(p, [task.id], "reopen", user="bob", note="they called back")
    entries = p.rows(audit, audit.c.event.like("task_%"))
    assert [(e.event, e.reason, e.detail["user"], e.detail["from"], e.detail["to"]) for e in entries] == [
        ("task_done", "called, all good", "ana", "open", "done"),
        ("task_reopened", "they called back", "bob", "done", "open")]
    assert all(e.account_id == "ACC-1" and e.playbook_id == "call" and e.detail["task"] == task.id for e in entries)


def test_unknown_ids_and_illegal_moves_name_each_task_and_change_nothing(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    one, two, three = (rows[0].id for _, rows in sorted(by_account(p).items()))
    change(p, [one], "done")
    with pytest.raises(UserError) as caught:
        change(p, [two, one, 9999], "snooze", until=T0 + timedelta(days=1))
    message = str(caught.value)
    assert f"task {one}: is done; cannot snooze a done task (reopen it first)" in message
    assert "task 9999: no such task" in message and "nothing was changed" in message
    assert caught.value.exit_code == 1
    assert [r.state for r in p.rows(tasks, tasks.c.id == two)] == ["open"]  # the good one was not half-applied
    with pytest.raises(UserError, match=f"task {one}: is done already"):
        change(p, [one], "done")
    with pytest.raises(UserError, match=f"task {three}: is open already"):
        change(p, [three], "reopen")
    with pytest.raises(UserError, match="not in the future"):
        change(p, [two], "snooze", until=T0 - timedelta(hours=1))
    with pytest.raises(UserError, match="not an email address"):
        change(p, [two], "reassign", assignee="bob at acme")
    with pytest.raises(UserError, match="done takes no until time"):
        change(p, [two], "done", until=T0 + timedelta(days=1))
    assert len(p.rows(audit, audit.c.event.like("task_%"))) == 1  # only the first, legal change


def test_a_snoozed_task_is_hidden_until_its_time_then_open_and_overdue_by_its_due_date(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    task = by_account(p)["ACC-1"][0]
    until = T0 + timedelta(days=3)
    (snoozed,) = change(p, [task.id], "snooze", until=until)
    assert (snoozed.new_state, snoozed.snoozed_until) == ("snoozed", until)
    listed = [t.id for t in work.list_tasks(p.engine, now=T0 + timedelta(days=1))]
    assert task.id not in listed and len(listed) == 2
    assert [t.state for t in work.list_tasks(p.engine, now=T0, include_closed=True) if t.id == task.id] == ["snoozed"]
    after = work.list_tasks(p.engine, now=until + timedelta(minutes=1), assignee="maria@acme.example", overdue=True)
    assert [(t.id, t.state) for t in after] == [(task.id, "open")]  # due at T0 + 2d, snooze over at T0 + 3d
    assert work.list_tasks(p.engine, now=T0 + timedelta(days=1), overdue=True) == []  # nothing due yet
    (done,) = change(p, [task.id], "done", at=until + timedelta(minutes=1))
    assert done.old_state == "open"  # a snooze that ended counts as open


def test_reopening_is_refused_while_another_task_of_the_same_step_is_open(make: Any, db_url: str) -> None:
    p = project(make, db_url)
    p.run(T0)
    first = by_account(p)["ACC-1"][0]
    change(p, [first.id], "dismiss", note="duplicate of a CRM case")
    p.run(T0 + timedelta(days=2))
    second = next(r for r in by_account(p)["ACC-1"] if r.id != first.id)
    with pytest.raises(UserError, match=f"task {first.id}: cannot reopen: task {second.id} is open"):
        change(p, [first.id], "reopen")
    change(p, [second.id], "done")
    (reopened,) = change(p, [first.id], "reopen")
    assert (reopened.old_state, reopened.new_state) == ("dismissed", "open")


def _new(enrollment_id: int) -> NewTask:
    return NewTask("call", "ACC-1", enrollment_id, 0, "task-x", f"Call, from enrollment {enrollment_id}",
                   "maria@acme.example", T0 + timedelta(days=2))


def test_replicas_racing_to_create_one_task_make_one_and_refresh_it(pg_url: str) -> None:
    """Two transactions at once on PostgreSQL: the second insert waits for the first to commit, then
    refreshes the task it made. Without the unique open_key both would insert."""
    engine = connect(pg_url)
    inserted, go_on = threading.Event(), threading.Event()
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction(engine) as conn:
                outcomes.append(open_task(conn, _new(1), T0, Tasks())[1])
                inserted.set()
                go_on.wait(10)  # held open while the other replica tries
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)

    def second() -> None:
        try:
            inserted.wait(10)
            with transaction(engine) as conn:
                outcomes.append(open_task(conn, _new(2), T0 + timedelta(minutes=1), Tasks())[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    threading.Timer(1.0, go_on.set).start()  # the second is blocked on the first's uncommitted row by now
    for thread in threads:
        thread.join(30)
    try:
        assert errors == [] and outcomes == ["created", "refreshed"]
        with engine.connect() as conn:
            rows = list(conn.execute(select(tasks)))
        assert len(rows) == 1
        assert (rows[0].refresh_count, rows[0].enrollment_id, rows[0].title) == (1, 2, "Call, from enrollment 2")
    finally:
        engine.dispose()


def test_a_value_the_database_refuses_fails_its_enrollment_alone(make: Any, pg_url: str) -> None:
    """PostgreSQL refuses an assignee longer than its column; the batch it was in runs again one
    enrollment at a time, so only that account's enrollment fails, with the database's reason."""
    long_csm = "m" * 330 + "@acme.example"
    p = make({"call": CALL}, accounts_csv=ACCOUNTS.replace(",Summit Bank,150000,active,enterprise,adopted,",
                                                           f",Summit Bank,150000,active,enterprise,adopted,{long_csm}"),
             database=pg_url, tasks=FALLBACK)
    report = p.run(T0)
    assert sorted(by_account(p)) == ["ACC-1", "ACC-3"]
    states = {r.account_id: (r.state, r.reason) for r in p.rows(enrollments)}
    assert states["ACC-1"][0] == states["ACC-3"][0] == "completed"
    state, reason = states["ACC-2"]
    assert state == "failed" and "the database refused what this step writes" in reason
    assert "character varying(320)" in reason
    assert [r.account_id for r in p.rows(audit, audit.c.event == "step_failed")] == ["ACC-2"]
    assert not report.ok
