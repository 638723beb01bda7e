"""Launch controls through real cycles on SQLite and PostgreSQL: the ramp's daily number and order,
admissions racing each other, a pause that loses no event, and retiring a playbook."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from playbookd import runtime
from playbookd.engine import launch, ranges, statuses
from playbookd.model.launch import declared
from playbookd.store import launch as launch_store
from playbookd.store.database import make_engine, transaction
from playbookd.store.schema import enrollments, launch_days, launch_queue, outbox
from playbookd.sync import events
from playbookd.sync.run import sync

T1 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 on 2 March in New York
RAMPED = """\
id: ramped
launch: {max_new_per_day: 3}
trigger: {when: {lifecycle_stage: adopted}}
steps:
  - email: {template: login_nudge, to: admin}
"""


def accounts_csv(stages: dict[str, str]) -> str:
    rows = [f"{a},Co {a},5000,active,basic,{stage},maria@acme.example" for a, stage in stages.items()]
    return "\n".join(["id,name,annual_revenue,status,plan,lifecycle_stage,csm_email", *rows]) + "\n"


def contacts_csv(ids: list[str]) -> str:
    rows = [f"{a},admin@{a.lower()}.example,Ana,admin,active,true" for a in ids]
    return "\n".join(["account_id,email,first_name,role,status,is_primary", *rows]) + "\n"


def queued(project: Any) -> list[Any]:
    with project.engine.connect() as conn:
        return list(conn.execute(select(launch_queue).order_by(launch_queue.c.qualified_at, launch_queue.c.account_id)))


def days(project: Any) -> dict[str, int]:
    with project.engine.connect() as conn:
        return {r.day: r.entered for r in conn.execute(select(launch_days))}


def entered(project: Any, playbook: str = "ramped") -> list[str]:
    return [r.account_id for r in project.rows(enrollments, enrollments.c.playbook_id == playbook)]


def test_a_ramp_lets_in_its_number_a_local_day_first_qualified_first(make: Any, db_url: str) -> None:
    ids = ["ACC-1", "ACC-2", "ACC-3", "ACC-4", "ACC-5", "ACC-6", "ACC-7"]
    day1 = {a: ("adopted" if a >= "ACC-3" else "onboarding") for a in ids}
    project = make({"ramped": RAMPED}, database=db_url, timezone="America/New_York",
                   accounts_csv=accounts_csv(day1), contacts_csv=contacts_csv(ids))
    project.run(T1)
    assert entered(project) == ["ACC-3", "ACC-4", "ACC-5"]
    project.run(T1 + timedelta(hours=12))  # 3:00 UTC on 3 March, still 2 March in New York
    assert len(entered(project)) == 3
    project.set_accounts(accounts_csv(dict.fromkeys(ids, "adopted")))  # ACC-1 and ACC-2 qualify a day later
    project.run(T1 + timedelta(days=1))
    # those waiting since yesterday go first, though ACC-1 sorts before them
    assert entered(project) == ["ACC-3", "ACC-4", "ACC-5", "ACC-6", "ACC-7", "ACC-1"]
    project.run(T1 + timedelta(days=2))
    assert entered(project)[6:] == ["ACC-2"]
    assert len(project.rows(outbox)) == 7 and queued(project) == []
    assert days(project) == {"2026-03-02": 3, "2026-03-03": 3, "2026-03-04": 1}


def test_an_account_that_stops_qualifying_leaves_the_waiting_list(make: Any, db_url: str) -> None:
    ids = ["ACC-1", "ACC-2", "ACC-3", "ACC-4"]
    project = make({"ramped": RAMPED.replace("max_new_per_day: 3", "max_new_per_day: 1")}, database=db_url,
                   accounts_csv=accounts_csv(dict.fromkeys(ids, "adopted")), contacts_csv=contacts_csv(ids))
    project.run(T1)
    assert entered(project) == ["ACC-1"]
    project.set_accounts(accounts_csv({**dict.fromkeys(ids, "adopted"), "ACC-2": "onboarding"}))
    project.run(T1 + timedelta(hours=1))
    assert [r.account_id for r in queued(project)] == ["ACC-3", "ACC-4"]
    project.set_accounts(accounts_csv(dict.fromkeys(ids, "adopted")))  # back, but at the back of the line
    project.run(T1 + timedelta(days=1))
    project.run(T1 + timedelta(days=2))
    project.run(T1 + timedelta(days=3))
    assert entered(project) == ["ACC-1", "ACC-3", "ACC-4", "ACC-2"]


def test_an_admission_waits_for_the_one_holding_the_days_count(make: Any, db_url: str) -> None:
    """Another replica admitting for the same playbook holds the day's row: this one waits for it to
    commit and then sees the day full, rather than counting from the number before."""
    project = make({"ramped": RAMPED}, database=db_url)
    with transaction(project.engine) as conn:
        launch_store.wait(conn, [{"playbook_id": "ramped", "account_id": f"ACC-{i:02d}", "segment": "tech_touch"}
                                 for i in range(10)], T1)
        # as after the day's first admission: the row exists, so only its lock keeps the two apart
        conn.execute(insert(launch_days).values(playbook_id="ramped", day="2026-03-02", entered=0))
    other = make_engine(db_url)
    made: list[int] = []
    thread = threading.Thread(target=lambda: made.append(launch.admit(project.runtime, other, T1)))
    try:
        with transaction(project.engine) as conn:
            assert launch._room(conn, project.runtime.playbook("ramped"), T1, project.config.tz) == 3
            thread.start()
            time.sleep(1.5)  # lets the other admission reach the day's row while this one holds it
            conn.execute(update(launch_days).values(entered=3))  # the day's number, taken here
        thread.join(timeout=60)
    finally:
        other.dispose()
    assert made == [0] and entered(project) == []
    assert len(queued(project)) == 10


def test_ranges_of_one_evaluation_share_the_days_number(make: Any, db_url: str) -> None:
    ids = [f"ACC-{i}" for i in range(1, 10)]
    project = make({"ramped": RAMPED}, database=db_url, evaluation={"range_size": 3, "workers": 1},
                   accounts_csv=accounts_csv(dict.fromkeys(ids, "adopted")), contacts_csv=contacts_csv(ids))
    sync(project.engine, project.config, now=T1)
    assert ranges.plan(project.engine, T1, 3) == 3
    assert ranges.work(project.runtime, project.engine) == 3
    assert entered(project) == ["ACC-1", "ACC-2", "ACC-3"]  # admitted once the last range was done
    assert len(queued(project)) == 6
    ranges.plan(project.engine, T1 + timedelta(hours=1), 3)
    ranges.work(project.runtime, project.engine)
    assert len(entered(project)) == 3


EVENTFUL = """\
id: eventful
status: paused
trigger: {event: nps_response, when: {event.score: {lte: 6}}}
steps:
  - email: {template: login_nudge, to: admin}
"""


def test_events_for_a_paused_playbook_wait_for_it(make: Any, db_url: str) -> None:
    project = make({"eventful": EVENTFUL}, database=db_url)
    project.run(T1)
    events.record(project.engine, [{"account": "ACC-1", "name": "nps_response", "data": {"score": 3}}])
    project.run(T1 + timedelta(hours=1))
    assert entered(project, "eventful") == [] and len(queued(project)) == 1
    (project.path / "playbooks" / "eventful.yaml").write_text(EVENTFUL.replace("paused", "live"))
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    project.run(T1 + timedelta(hours=2))
    (enrollment,) = project.rows(enrollments)
    assert (enrollment.account_id, enrollment.event_id is not None) == ("ACC-1", True)
    assert len(project.rows(outbox)) == 1 and queued(project) == []


WAITS = """\
id: waits
{status}
trigger: {{when: {{status: active}}}}
steps:
  - email: {{template: login_nudge, to: admin}}
  - wait: 30d
  - email: {{template: login_nudge_short, to: admin}}
"""


def test_retiring_a_playbook_ends_every_enrollment_at_once(make: Any, db_url: str) -> None:
    project = make({"waits": WAITS.format(status="status: live")}, database=db_url)
    project.run(T1)
    (project.path / "playbooks" / "waits.yaml").write_text(WAITS.format(status="enabled: false"))
    project.runtime = runtime.load(engine=project.engine, config=project.config)
    project.run(T1 + timedelta(hours=1))  # long before the wait is over
    (row,) = project.rows(enrollments)
    assert (row.state, row.reason) == ("exited", "playbook removed or retired")
    with project.engine.connect() as conn:
        assert conn.execute(select(outbox.c.state)).scalars().all() == ["sent"]


def test_a_status_set_by_command_stands_until_the_file_changes(make: Any, db_url: str) -> None:
    project = make({"waits": WAITS.format(status="status: paused")}, database=db_url)

    def status() -> str:
        with project.engine.connect() as conn:
            return launch_store.statuses(project.runtime.playbooks, conn)["waits"]

    def edit(line: str, at: datetime) -> None:
        (project.path / "playbooks" / "waits.yaml").write_text(WAITS.format(status=line))
        project.runtime = runtime.load(engine=project.engine, config=project.config)
        project.run(at)

    (found,) = declared(project.path / "playbooks")
    assert statuses.set_status(project.engine, found, "live", T1, None) == "waits is live (was paused)"
    project.run(T1)
    assert status() == "live" and len(project.rows(outbox)) == 1  # the command overrides the file
    edit("status: live", T1 + timedelta(hours=1))
    edit("status: paused", T1 + timedelta(hours=2))
    assert status() == "paused"  # the file changed since: its latest word counts, the old command no more

