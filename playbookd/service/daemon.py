"""`playbookd run`: the long-running daemon.

Shutdown has two stages: the first SIGTERM or SIGINT stops taking new work and lets the
job in flight finish (delivery stops after the message it is sending; a render or rules
batch in a worker process is abandoned at once, to run again on the next start); a second
one exits at once. No worker process outlives the daemon (see playbookd.workers). SIGHUP
reloads config, playbooks and templates, keeping the running set when the new one does not
validate.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.engine import Engine

from playbookd import runtime, workers
from playbookd.config.settings import load_config
from playbookd.console.app import Console
from playbookd.console.views import mount
from playbookd.delivery import circuit, recovery
from playbookd.delivery.courier import Courier
from playbookd.delivery.unsubscribe import resolve_secret
from playbookd.engine import ranges
from playbookd.errors import DependencyError, PlaybookdError, ValidationError
from playbookd.service import cycle, http, logs
from playbookd.service.leadership import Leadership
from playbookd.service.notify import Notifier
from playbookd.service.scheduler import CONTROL, DELIVERY, EVENTS, REPORTS, WEBHOOKS, Scheduler
from playbookd.store.database import connect, transaction, utcnow
from playbookd.store.leases import WORKER
from playbookd.sync import health

log = logging.getLogger("playbookd.daemon")
LEAD_EVERY = timedelta(seconds=5)  # a replica takes over within this of the leader's death
FAILING_RUNS = 3  # consecutive failed runs of a job before /healthz answers 503
STUCK_GRACE = 10.0  # seconds a render or rules batch may run past its limit before the daemon is unhealthy
CANCELLED = 130  # like an interrupted shell command; 1 means a configuration error


@dataclass
class Daemon:
    config_path: Path | None
    runtime: runtime.Runtime
    engine: Engine
    stop: threading.Event = field(default_factory=threading.Event)
    reload_requested: threading.Event = field(default_factory=threading.Event)
    scheduler: Scheduler = field(default_factory=Scheduler)
    signals: int = 0
    notifier: Notifier = field(default_factory=Notifier)
    leader: bool = False
    failures: dict[str, list[str]] = field(default_factory=dict)
    reacting: threading.Lock = field(default_factory=threading.Lock)  # job -> errors of its consecutive failed runs
    courier: Courier | None = None  # the delivery job's kept connections
    console_listener: http.Server | None = None  # the console on console.listen, when set

    def __post_init__(self) -> None:
        self.leadership = Leadership(self.engine)

    def lead(self) -> None:
        """Only the leader syncs and plans evaluations; every replica evaluates ranges and delivers."""
        was, self.leader = self.leader, self.leadership.hold()
        if self.leader != was:
            log.info("leading" if self.leader else "no longer leading", extra={"worker": WORKER})

    def full_cycle(self) -> None:
        self._guard("cycle", self._cycle)

    def _cycle(self) -> None:
        if self.leader:
            self._sync(None)
            self._evaluate()

    def _evaluate(self) -> None:
        if self.leader:
            ranges.plan(self.engine, utcnow(), self.runtime.config.evaluation.range_size, self.runtime)
            self.scheduler.nudge("ranges")
            self._react()

    def evaluate(self) -> None:
        self._guard("evaluate", self._evaluate)

    def ranges(self) -> None:
        self._guard("ranges", self._ranges)

    def _ranges(self) -> None:
        if cycle.evaluate_ranges(self.runtime, self.engine, self.stop):
            self.scheduler.nudge("deliver")

    def sync_source(self, name: str) -> None:
        if self.leader:
            self._guard(f"sync {name}", lambda: self._sync([name]))

    def _sync(self, only: list[str] | None) -> None:
        """A source that cannot be read fails alone: it is tried again with backoff, before its turn."""
        report = cycle.run_sync(self.runtime, self.engine, only, retry=True)
        for source in report.sources:
            if source.retry_at is not None:
                self.scheduler.run_at(f"sync:{source.source}", source.retry_at)

    def react(self) -> None:
        """Events start their playbooks within one delivery interval, not at the next evaluation."""
        self._guard("events", self._react)

    def _react(self) -> None:
        with self.reacting:  # the events job and an evaluation never process the same events at once
            self._react_now()

    def _react_now(self) -> None:
        if self.leader and cycle.react_to_events(self.runtime, self.engine, utcnow()):
            self.scheduler.nudge("deliver")

    def deliver(self) -> None:
        self._guard("deliver", lambda: cycle.deliver_due(self.runtime, self.engine, self.stop, courier=self._courier()))

    def _courier(self) -> Courier:
        """Connections live as long as the configuration they were opened for."""
        if self.courier is not None and self.courier.runtime is not self.runtime:
            self.courier.close()
            self.courier = None
        if self.courier is None:
            self.courier = cycle.new_courier(self.runtime)
        return self.courier

    def post_webhooks(self) -> None:
        """Beside delivery, not after it: a slow receiver never holds up email."""
        self._guard("webhooks", lambda: cycle.post_webhooks(self.runtime, self.engine, self.stop))

    def retention(self) -> None:
        if self.leader:  # one replica is enough; all of them would only contend for the same rows
            self._guard("retention", lambda: cycle.apply_retention(self.runtime, self.engine, stop=self.stop))

    def refresh_reports(self) -> None:
        """The console's report figures; leader only, like retention: one replica's counting is enough."""
        if self.leader:
            self._guard("report", lambda: cycle.refresh_reports(self.runtime, self.engine, stop=self.stop))

    def _guard(self, what: str, job: object) -> None:
        """A failing job is logged and retried on its next turn; it never takes the daemon down."""
        if self.stop.is_set():
            return
        try:
            job()  # type: ignore[operator]
        except workers.Interrupted:
            log.info("%s stopped mid-job; what it had not finished runs again on the next start", what)
        except PlaybookdError as exc:
            log.error("%s failed: %s", what, exc)
            self._failed(what, str(exc))
        except Exception as exc:
            log.exception("%s failed unexpectedly", what)
            self._failed(what, f"{type(exc).__name__}: {exc}")
        else:
            self.failures.pop(what, None)

    def _failed(self, what: str, error: str) -> None:
        errors = self.failures.setdefault(what, [])
        errors.append(error)
        del errors[:-FAILING_RUNS]  # only the latest runs matter

    def failing(self) -> dict[str, str]:
        """Jobs that failed their last FAILING_RUNS runs, with the last error, and work stuck past its
        limit (nobody is enforcing it any more): what /healthz reports."""
        failing = {job: errors[-1] for job, errors in list(self.failures.items()) if len(errors) >= FAILING_RUNS}
        stuck = workers.overdue(STUCK_GRACE)
        return {**failing, "stuck": "; ".join(stuck)} if stuck else failing

    def heartbeat(self) -> None:
        """The watchdog ping, withheld while work is stuck past its limit: then systemd restarts us."""
        if not workers.overdue(STUCK_GRACE):
            self.notifier.watchdog()

    def schedule(self) -> None:
        config = self.runtime.config
        self.scheduler.every("cycle", config.scheduler.evaluate_every, self.evaluate,
                             first_in=config.scheduler.evaluate_every)
        for source in config.sources:
            every = source.every or config.scheduler.sync_every
            self.scheduler.every(f"sync:{source.name}", every, functools.partial(self.sync_source, source.name),
                                 first_in=every)
        self.scheduler.every("deliver", config.scheduler.deliver_every, self.deliver, executor=DELIVERY)
        self.scheduler.every("webhooks", config.scheduler.deliver_every, self.post_webhooks, executor=WEBHOOKS)
        every = config.scheduler.deliver_every
        self.scheduler.every("events", every, self.react, executor=EVENTS, first_in=every)
        self.scheduler.every("ranges", timedelta(seconds=2), self.ranges)
        self.scheduler.every("retention", config.retention.every, self.retention)
        self.scheduler.every("report", config.report.refresh_every, self.refresh_reports, executor=REPORTS)
        self.scheduler.every("lead", LEAD_EVERY, self.lead, executor=CONTROL, first_in=LEAD_EVERY)
        self._schedule_calendar()

    def _schedule_calendar(self) -> None:
        """An evaluation at each occurrence of every calendar playbook's schedule, so a 09:00 newsletter
        goes at 09:00, not at the next evaluate_every."""
        wanted = {f"calendar:{p.id}": p.schedule for p in self.runtime.active if p.schedule is not None}
        for job in self.scheduler.jobs():
            if job.startswith("calendar:") and job not in wanted:
                self.scheduler.remove(job)
        for name, schedule in wanted.items():
            self.scheduler.cron(name, schedule.cron, self.runtime.config.tz, self.evaluate)

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.notifier.ready("running")

    def _reload(self) -> None:
        try:
            config = load_config(self.config_path)
            fresh = runtime.load(config=config, engine=self.engine)
        except ValidationError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error("reload failed validation; still running the previous set")
            return
        except PlaybookdError as exc:
            log.error("reload refused: %s; still running the previous set", exc)
            return
        self.runtime = fresh
        names = {f"sync:{source.name}" for source in config.sources}
        for job in self.scheduler.jobs():
            if job.startswith("sync:") and job not in names:
                self.scheduler.remove(job)
        self.schedule()  # jobs whose interval did not change keep their next run
        log.info("reloaded", extra={"playbooks": len(fresh.playbooks)})

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested.set()
            return
        self.signals += 1
        if self.signals > 1:
            log.warning("second signal: cancelling now")
            os._exit(CANCELLED)
        log.info("stopping: finishing work in flight (signal again to cancel)")
        self.notifier.stopping()
        self.stop.set()

    def healthy(self) -> dict[str, Any]:
        """/healthz: failing jobs, and each source's state. A source that cannot be read leaves the
        daemon healthy (the other sources sync, it is retried) but is named under `sources_failing`;
        so does an open SMTP circuit (delivery pauses and retries by itself), under `smtp_circuit`."""
        sources = health.states(self.engine, [source.name for source in self.runtime.config.sources])
        with self.engine.connect() as conn:
            paused = circuit.current(conn)
        return {**http.health(self.engine, self.failing()), "sources": sources,
                "sources_failing": sorted(health.failing(sources)), "smtp_circuit": paused}

    def listen(self) -> http.Server:
        """The HTTP listener, with the console under /console/ when it is on; or, with `console.listen`,
        a second listener for the console alone (the unsubscribe one is often public)."""
        config = self.runtime.config
        with transaction(self.engine) as conn:
            secret = resolve_secret(conn, config.delivery.unsubscribe_secret)
        console = mount(Console(self.engine, lambda: self.runtime, secret)) if config.console.enabled else None
        apart = console is not None and config.console.listen is not None
        site = http.Site(self.engine, secret, config.company.name, self.healthy,
                        config.http.events_token, lambda: self.scheduler.nudge("events"),
                        scan_seconds=config.delivery.scan_seconds, console=None if apart else console)
        server = self._bind(config.http.listen, site)
        if apart and config.console.listen is not None:
            alone = http.Site(self.engine, secret, config.company.name, self.healthy, console=console,
                              console_only=True)
            self.console_listener = self._bind(config.console.listen, alone)
            self.console_listener.start()
        server.start()
        return server

    def _console_at(self) -> str | None:
        """Where the console answers, for the start line of the log."""
        console = self.runtime.config.console
        if not console.enabled:
            return None
        return f"http://{console.listen or self.runtime.config.http.listen}/console/login"

    @staticmethod
    def _bind(listen: str, site: http.Site) -> http.Server:
        try:
            return http.Server(listen, site)
        except OSError as exc:
            raise DependencyError(f"cannot listen on {listen}: {exc.strerror}") from exc

    def serve(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        listener = self.listen()
        recovered = recovery.recover(self.engine)
        if recovered:
            log.warning("messages interrupted mid-delivery marked unknown", extra={"count": recovered})
        self.lead()
        self.scheduler.start()
        self.scheduler.once("first-cycle", self.full_cycle)
        self.schedule()
        log.info("started", extra={"playbooks": len(self.runtime.playbooks), "pid": os.getpid(),
                                   "http": self.runtime.config.http.listen,
                                   "console": self._console_at()})
        self.notifier.ready("running")
        while not self.stop.wait(0.2):
            self.heartbeat()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
        workers.interrupt_all()  # a render or rules batch in flight ends now, not at its limit
        self.scheduler.shutdown(wait=True)
        if self.courier is not None:
            self.courier.close()
        self.leadership.release()
        listener.shutdown()
        if self.console_listener is not None:
            self.console_listener.shutdown()
        log.info("stopped")
        return 0


def start(config_path: Path | None) -> Daemon:
    config = load_config(config_path)
    logs.setup(config.logging.level, config.logging.format)
    engine = connect(config.database)
    return Daemon(config_path, runtime.load(config=config, engine=engine), engine)
