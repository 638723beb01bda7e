"""The daemon's timetable, in process: which jobs run how often, and what a reload keeps."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml
from cli_helpers import edit_config
from smtp_server import free_port

from playbookd import runtime, workers
from playbookd.config.settings import load_config
from playbookd.errors import PlaybookdError
from playbookd.service.daemon import STUCK_GRACE, Daemon
from playbookd.service.metrics import exposition
from playbookd.service.notify import Notifier
from playbookd.store.database import utcnow
from playbookd.sync import health

HELLO = "id: hello\ntrigger: {when: {status: active}}\nsteps:\n  - email: {template: login_nudge, to: admin}\n"


@pytest.fixture
def daemon(make: Any) -> Iterator[Daemon]:
    project = make({"hello": HELLO}, scheduler={"sync_every": "2h"}, http={"listen": f"127.0.0.1:{free_port()}"})
    daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
    daemon.scheduler.start()
    daemon.schedule()
    yield daemon
    daemon.scheduler.shutdown(wait=True)


def test_every_source_is_synced_on_a_timer(daemon: Daemon) -> None:
    sources = daemon.runtime.config.sources
    assert [s.every for s in sources] == [None, None]  # neither names its own interval
    assert {daemon.scheduler.interval(f"sync:{s.name}") for s in sources} == {timedelta(hours=2)}


def test_webhooks_have_their_own_job_beside_delivery(daemon: Daemon) -> None:
    every = daemon.runtime.config.scheduler.deliver_every
    assert daemon.scheduler.interval("webhooks") == every == daemon.scheduler.interval("deliver")


def test_a_reload_keeps_every_timer_whose_interval_did_not_change(daemon: Daemon) -> None:
    # the evaluation and the syncs: jobs that cannot run (and move their own timer) during the test
    # (retention is slow too, but runs once at start)
    slow = [name for name in daemon.scheduler.jobs()
            if daemon.scheduler.interval(name) >= timedelta(minutes=15) and name != "retention"]
    assert "cycle" in slow and len(slow) == 3
    before = {name: daemon.scheduler.next_run(name) for name in slow}
    daemon.reload()
    assert {name: daemon.scheduler.next_run(name) for name in slow} == before


def test_a_reload_reschedules_a_changed_interval_and_drops_a_removed_source(daemon: Daemon) -> None:
    project = daemon.config_path.parent  # type: ignore[union-attr]
    name = daemon.runtime.config.sources[1].name
    edit_config(project, scheduler={"sync_every": "2h", "evaluate_every": "5min"},
                sources=[{**daemon.runtime.config.sources[0].model_dump(mode="json", exclude_none=True,
                                                                         by_alias=True)}])
    daemon.reload()
    assert daemon.scheduler.interval("cycle") == timedelta(minutes=5)
    assert f"sync:{name}" not in daemon.scheduler.jobs()


def test_health_turns_503_when_a_job_failed_its_last_three_runs(daemon: Daemon) -> None:
    def broken() -> None:
        raise PlaybookdError("crm.example: connection refused")

    job = "sync crm_accounts"  # a job the running scheduler does not run itself within the test
    for _ in range(2):
        daemon._guard(job, broken)
    assert daemon.failing() == {}
    daemon._guard(job, broken)
    site = daemon.listen()
    try:
        url = f"http://{daemon.runtime.config.http.listen}/healthz"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 503
        report = json.loads(refused.value.read())
        assert report["status"] == "failing"
        assert report["failing_jobs"] == {job: "crm.example: connection refused"}
        daemon._guard(job, lambda: None)  # one good run clears it
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and json.loads(answer.read())["failing_jobs"] == {}
    finally:
        site.shutdown()


def test_events_email_and_webhooks_never_wait_behind_a_long_sync(daemon: Daemon) -> None:
    jobs = {job.id: job.executor for job in daemon.scheduler._scheduler.get_jobs()}
    assert jobs["cycle"] == jobs["sync:crm_accounts"] == "work"
    assert len({jobs["cycle"], jobs["events"], jobs["deliver"], jobs["webhooks"], jobs["lead"]}) == 5


def test_a_source_that_cannot_be_read_is_retried_with_backoff_and_named_by_healthz(make: Any, db_url: str) -> None:
    project = make({"hello": HELLO}, database=db_url, scheduler={"sync_every": "2h"},
                   http={"listen": f"127.0.0.1:{free_port()}"})
    down = {"name": "usage", "kind": "sql", "entity": "accounts", "query": "SELECT 'A1' AS id",
            "url": f"postgresql+psycopg://reader@127.0.0.1:{free_port()}/app?connect_timeout=3"}
    edit_config(project.path, sources=[*yaml.safe_load((project.path / "config.yaml").read_text())["sources"], down])
    config = load_config(project.path / "config.yaml")
    daemon = Daemon(project.path / "config.yaml", runtime.load(config=config, engine=project.engine), project.engine)
    daemon.leader = True
    daemon.scheduler.start()
    daemon.schedule()
    try:
        daemon.sync_source("crm_accounts")
        for attempt in (1, 2, 3):
            started = utcnow()
            daemon.sync_source("usage")
            retry_at = daemon.scheduler.next_run("sync:usage")
            assert retry_at is not None
            wait = 60 * 2 ** (attempt - 1)  # 1, 2, 4 minutes, each ±20%, long before the 2h interval
            assert started + timedelta(seconds=wait * 0.8) <= retry_at <= utcnow() + timedelta(seconds=wait * 1.2)
            state = health.states(project.engine)["usage"]
            assert (state["ok"], state["attempts"], datetime.fromisoformat(state["next_retry"])) == (
                False, attempt, retry_at)
        assert daemon.scheduler.interval("sync:usage") == timedelta(hours=2)
        report = daemon.healthy()
        assert (report["status"], report["failing_jobs"], report["sources_failing"]) == ("ok", {}, ["usage"])
        assert report["sources"]["crm_accounts"]["ok"] is True
        assert "Connection refused" in report["sources"]["usage"]["last_error"]
        assert 'playbookd_source_failing{source="usage"} 1.0' in exposition(project.engine).decode()
        assert 'playbookd_source_failed_attempts{source="usage"} 3.0' in exposition(project.engine).decode()
    finally:
        daemon.scheduler.shutdown(wait=True)


def test_work_stuck_past_its_limit_turns_health_503_and_stops_the_watchdog(daemon: Daemon, tmp_path: Any) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0.5)
        daemon.notifier = Notifier(str(tmp_path / "notify"))
        daemon.notifier.watchdog_usec = 1  # every heartbeat pings
        daemon.heartbeat()
        assert systemd.recv(100) == b"WATCHDOG=1"
        # a render whose waiting thread enforces nothing (wedged): its limit passes unnoticed
        worker = workers.Worker()
        try:
            worker.submit(workers.Call(time.sleep, (3600,), 0.1, "rendering x.html.j2 for account ACC-1"))
            while worker.free_at is None:
                worker.receive()
                time.sleep(0.05)
            time.sleep(0.1 + STUCK_GRACE + 1)
            assert "ACC-1" in daemon.failing()["stuck"]
            daemon.heartbeat()
            with pytest.raises(TimeoutError):
                systemd.recv(100)
        finally:
            worker.kill()
        assert daemon.failing() == {}
        daemon.heartbeat()
        assert systemd.recv(100) == b"WATCHDOG=1"


def test_healthz_names_an_open_smtp_circuit_and_stays_200(make: Any, db_url: str) -> None:
    from smtp_server import SmtpServer

    with SmtpServer() as server:
        server.recorder.refuse_all = "550 5.7.1 Relaying denied"
        project = make({"hello": HELLO}, database=db_url, http={"listen": f"127.0.0.1:{free_port()}"},
                       delivery={"transport": "smtp",
                                 "smtp": {"host": "127.0.0.1", "port": server.port, "timeout": 5, "circuit_after": 1}})
        daemon = Daemon(project.path / "config.yaml", project.runtime, project.engine)
        assert daemon.healthy()["smtp_circuit"] is None
        project.run(utcnow())
    site = daemon.listen()
    try:
        with urllib.request.urlopen(f"http://{daemon.runtime.config.http.listen}/healthz", timeout=10) as answer:
            assert answer.status == 200  # delivery pauses and retries by itself: not a reason to restart us
            report = json.loads(answer.read())
    finally:
        site.shutdown()
    assert report["smtp_circuit"]["last_reply"] == "RCPT: 550 5.7.1 Relaying denied"
    assert report["smtp_circuit"]["openings"] == 1 and report["smtp_circuit"]["until"]
