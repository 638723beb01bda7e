"""The daemon's report refresh, on SQLite and PostgreSQL: scheduled every report.refresh_every on the
leader only, and a playbook whose figures cannot be computed (a corrupt row, as a bad restore or a
hand edit leaves) is logged with its error and counted while the other playbooks are refreshed."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from cli_helpers import playbookd
from sqlalchemy import delete, text
from sqlalchemy.engine import Engine

from playbookd.report import snapshots
from playbookd.service.daemon import Daemon
from playbookd.service.metrics import REGISTRY, exposition
from playbookd.service.scheduler import REPORTS
from playbookd.store.database import utcnow
from playbookd.store.schema import report_snapshots

HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"
WELCOME = HELLO.replace("id: hello", "id: welcome")
FAILURES = "playbookd_report_refresh_failures_total"


def status(project: Any, *args: str) -> str:
    done = playbookd("status", *args, cwd=project.path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(snapshots.load_all(conn))


def forget_snapshots(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(report_snapshots))


def corrupt_goal_times(engine: Engine, playbook: str) -> None:
    """A goal time the database holds but Python cannot read: text in SQLite's loose column, and
    PostgreSQL's 'infinity', which no datetime can represent."""
    value = "infinity" if engine.dialect.name == "postgresql" else "not a time"
    with engine.begin() as conn:
        changed = conn.execute(text("UPDATE enrollments SET goal_met_at = :v WHERE playbook_id = :p"),
                               {"v": value, "p": playbook})
    assert changed.rowcount == 1


@pytest.fixture
def project(make: Any, db_url: str) -> Any:
    made = make({"hello": HELLO, "welcome": WELCOME}, database=db_url, report={"refresh_every": "7min"})
    report = made.run(utcnow())
    assert report.reports is not None and set(report.reports.refreshed) == {"hello", "welcome"}  # run --once too
    forget_snapshots(made.engine)
    return made


def test_the_leader_refreshes_the_figures_on_their_own_schedule(project: Any) -> None:
    follower = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    follower.refresh_reports()
    assert stored(project.engine) == set()  # one replica's counting is enough: the leader's
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    daemon.leader = True
    daemon.scheduler.start()
    try:
        daemon.schedule()
        assert daemon.scheduler.interval("report") == project.runtime.config.report.refresh_every
        job = daemon.scheduler._scheduler.get_job("report")
        assert job.executor == REPORTS  # beside evaluation, not queued behind it
        deadline = time.monotonic() + 60
        while stored(project.engine) != {"hello", "welcome"} and time.monotonic() < deadline:
            time.sleep(0.1)  # its first run is at start
        assert stored(project.engine) == {"hello", "welcome"}
    finally:
        daemon.scheduler.shutdown(wait=True)


def test_a_playbook_that_fails_is_logged_and_counted_and_the_others_are_refreshed(
        project: Any, caplog: pytest.LogCaptureFixture) -> None:
    corrupt_goal_times(project.engine, "hello")
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    daemon.leader = True
    before = REGISTRY.get_sample_value(FAILURES, {"playbook": "hello"}) or 0
    with caplog.at_level(logging.ERROR, logger="playbookd.cycle"):
        daemon.refresh_reports()
    assert stored(project.engine) == {"welcome"}
    assert REGISTRY.get_sample_value(FAILURES, {"playbook": "hello"}) == before + 1
    assert REGISTRY.get_sample_value(FAILURES, {"playbook": "welcome"}) in (None, 0)
    (logged,) = [r for r in caplog.records if "hello" in r.getMessage()]
    assert logged.exc_text and "Traceback" in logged.exc_text  # the whole error, not a summary
    assert "not a time" in logged.exc_text or "infinity" in logged.exc_text
    assert daemon.failing() == {}  # the job ran; the daemon stays healthy
    scraped = exposition(project.engine).decode()
    assert 'playbookd_report_figures_age_seconds{playbook="welcome"}' in scraped
    assert 'playbookd_report_figures_age_seconds{playbook="hello"}' not in scraped  # never computed
    again = project.run(utcnow())  # run --once names it and exits 1
    assert [e for e in again.errors if "report figures of hello" in e]


def test_status_names_a_playbook_whose_figures_failed_until_a_refresh_succeeds(project: Any) -> None:
    corrupt_goal_times(project.engine, "hello")
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    daemon.leader = True
    daemon.refresh_reports()
    shown = status(project)
    assert "Report figures that could not be refreshed" in shown
    assert "hello" in shown and ("not a time" in shown or "infinity" in shown)
    assert set(json.loads(status(project, "--format", "json"))["report_failures"]) == {"hello"}  # not welcome
    with project.engine.begin() as conn:
        conn.execute(text("UPDATE enrollments SET goal_met_at = NULL WHERE playbook_id = 'hello'"))
    daemon.refresh_reports()
    assert json.loads(status(project, "--format", "json"))["report_failures"] == {}
    assert "could not be refreshed" not in status(project)
