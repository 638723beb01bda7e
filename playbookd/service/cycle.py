"""One cycle of the engine: sync, evaluate, advance due steps, deliver."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from playbookd.cadence.advance import advance
from playbookd.config.settings import Source
from playbookd.delivery import outbox, webhooks
from playbookd.delivery.backoff import backoff
from playbookd.delivery.courier import Courier
from playbookd.delivery.senders import FixedClock, SenderFailed, merged
from playbookd.engine import evaluate, events, ranges
from playbookd.engine.launch import admit
from playbookd.report import snapshots
from playbookd.runtime import Runtime
from playbookd.service import logs, metrics
from playbookd.service.beside import Beside
from playbookd.store import audit, launch, retention
from playbookd.store.database import utcnow
from playbookd.store.state import put
from playbookd.sync.run import SyncReport, sync

log = logging.getLogger("playbookd.cycle")


@dataclass
class RefreshReport:
    refreshed: dict[str, float] = field(default_factory=dict)  # playbook -> seconds its figures took
    failed: dict[str, str] = field(default_factory=dict)  # playbook -> why not

    def line(self) -> str:
        took = sum(self.refreshed.values())
        failed = f", {len(self.failed)} failed: {', '.join(sorted(self.failed))}" if self.failed else ""
        return f"report figures: refreshed {len(self.refreshed)} playbook(s) in {took:.1f} s{failed}"


@dataclass
class CycleReport:
    sync: SyncReport | None = None
    enrolled: int = 0
    advanced: int = 0
    delivery: outbox.DeliveryReport = field(default_factory=outbox.DeliveryReport)
    webhooks: webhooks.WebhookReport = field(default_factory=webhooks.WebhookReport)
    seconds: float = 0.0
    failed_accounts: int = 0  # accounts the rules engine could not evaluate
    failed_steps: int = 0  # enrollments stopped at a step that could not run
    errors: list[str] = field(default_factory=list)  # why the cycle did not do all it should have
    purged: retention.Purged = field(default_factory=retention.Purged)
    reports: RefreshReport | None = None
    # stage -> wall seconds it took in run --once; "sent beside advance" is a count of messages instead
    stages: dict[str, float] = field(default_factory=dict)

    def took(self) -> str:
        """bench/peer.py --stages reads this line of `run --once`."""
        parts = ", ".join(f"{stage} {took:.2f}" for stage, took in self.stages.items())
        return f"cycle: {self.seconds:.2f} s ({parts})"

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.monotonic() - started

    @property
    def ok(self) -> bool:
        return not self.errors and (self.sync is None or self.sync.ok)


def run_sync(runtime: Runtime, engine: Engine, only: Sequence[str] | None = None,
             now: datetime | None = None, retry: bool = False) -> SyncReport:
    """`retry`: a source that cannot be read gets a `retry_at`, with backoff up to its interval (the
    daemon schedules it; a one-off sync does not)."""
    config = runtime.config

    def retry_in(source: Source, attempts: int) -> timedelta:
        return backoff(attempts, source.every or config.scheduler.sync_every)

    with metrics.CYCLE_SECONDS.labels("sync").time():
        report = sync(engine, config, only, now=now, retry_in=retry_in if retry else None)
    for line in report.summary_lines():
        log.info(line)
    for source in report.sources:
        metrics.SYNCED_ROWS.labels(source.source).inc(source.read)
        if source.failure is not None:
            then = f"; next try at {source.retry_at.isoformat(timespec='seconds')}" if source.retry_at else ""
            log.error("source %s could not be read (%d time(s) in a row%s): %s", source.source, source.attempts,
                      then, source.failure, extra={"source": source.source, "attempts": source.attempts})
    return report


def evaluate_and_advance(runtime: Runtime, engine: Engine, now: datetime, report: CycleReport) -> None:
    evaluate_due(runtime, engine, now, report)
    advance_due(runtime, engine, now, report)


def evaluate_due(runtime: Runtime, engine: Engine, now: datetime, report: CycleReport) -> None:
    """The evaluation's enrollments, and those the launch queues admit."""
    with report.timed("evaluate"):
        report.enrolled = evaluate.evaluate(runtime, engine, now)
        report.enrolled += admit(runtime, engine, now, sweep=True)


def advance_due(runtime: Runtime, engine: Engine, now: datetime, report: CycleReport) -> None:
    """Every due step, then the evaluation recorded (note_evaluation); the `evaluate` cycle time covers
    evaluating and advancing, once per cycle."""
    try:
        with report.timed("advance"):
            report.advanced = advance(runtime, engine, now)
    finally:  # a failed advance is timed too
        metrics.CYCLE_SECONDS.labels("evaluate").observe(report.stages.get("evaluate", 0.0) + report.stages["advance"])
    with report.timed("status"):
        note_evaluation(runtime, engine, now, report)


def note_evaluation(runtime: Runtime, engine: Engine, now: datetime, report: CycleReport) -> None:
    """The evaluation's failures become the cycle's errors; its counts go to metrics, log and state."""
    report.failed_accounts = audit.count_at(engine, audit.EVALUATION_FAILED, now)
    report.failed_steps = audit.count_at(engine, audit.STEP_FAILED, now)
    if report.failed_steps:
        report.errors.append(f"{report.failed_steps} enrollment(s) stopped at a step that could not run; "
                             "`playbookd status` shows each error, `playbookd enrollments retry` runs them again")
    allowed = runtime.config.evaluation.max_failed_accounts
    if report.failed_accounts > allowed:
        report.errors.append(f"the rules engine could not evaluate {report.failed_accounts} account(s), more than "
                             f"evaluation.max_failed_accounts ({allowed}); `playbookd history` has each one's error")
    metrics.EVALUATIONS.inc()
    metrics.ENROLLED.inc(report.enrolled)
    log.info("evaluated", extra={"enrolled": report.enrolled, "advanced": report.advanced})
    put(engine, "last_evaluation", {"at": now.isoformat(), "enrolled": report.enrolled,
                                    "advanced": report.advanced})


def evaluate_ranges(runtime: Runtime, engine: Engine, stop: threading.Event | None = None) -> bool:
    """This replica's share of planned evaluations, then every due step; True when anything moved.

    Due steps are advanced on every call, not only after range work: a replica that dies between
    enrolling and advancing leaves due enrollments behind, and waits come due between evaluations.
    """
    started = time.monotonic()
    done = ranges.work(runtime, engine, stop)
    advanced = advance(runtime, engine, utcnow())
    if done:
        metrics.CYCLE_SECONDS.labels("evaluate").observe(time.monotonic() - started)
        metrics.EVALUATIONS.inc()
        log.info("evaluated", extra={"ranges": done, "advanced": advanced})
        put(engine, "last_cycle", {"at": utcnow().isoformat()})
    elif advanced:
        log.info("advanced", extra={"advanced": advanced})
    return bool(done or advanced)


def react_to_events(runtime: Runtime, engine: Engine, now: datetime) -> int:
    """Enroll from pending events and run the new enrollments' first steps; returns enrollments made."""
    enrolled = events.process_events(runtime, engine, now)
    enrolled += admit(runtime, engine, now)
    if enrolled:
        advance(runtime, engine, now)
        log.info("events processed", extra={"enrolled": enrolled})
    return enrolled


def new_courier(runtime: Runtime, one_run: bool = False) -> Courier:
    """Send times observed by metrics; sending processes log as the daemon does. `one_run`: run --once's,
    whose deliveries are one run for `status` (see Courier)."""
    setup = functools.partial(logs.setup, runtime.config.logging.level, runtime.config.logging.format)
    return Courier(runtime, metrics.timed, setup=setup, one_run=one_run)


def deliver_due(runtime: Runtime, engine: Engine, stop: threading.Event | None = None,
                clock: Callable[[], datetime] = utcnow, courier: Courier | None = None) -> outbox.DeliveryReport:
    """With the daemon's `courier`, over connections kept between ticks; without, over fresh ones."""
    own = courier is None
    courier = courier or new_courier(runtime)
    try:
        report = courier.deliver(engine, stop, clock)
    except SenderFailed as exc:
        metrics.SENDER_FAILURES.inc()
        metrics.observe_sends(runtime.config.delivery.transport, exc.report.send_seconds)
        raise
    finally:
        if own:
            courier.close()
    metrics.observe_sends(runtime.config.delivery.transport, report.send_seconds)  # the sending processes' sends
    if report.sent or report.failed or report.unknown or report.retried:
        log.info("delivered", extra={"delivery": report.line()})
    return report


def post_webhooks(runtime: Runtime, engine: Engine, stop: threading.Event | None = None,
                  clock: Callable[[], datetime] = utcnow) -> webhooks.WebhookReport:
    report = webhooks.post_due(engine, runtime.config.delivery.max_age, stop, clock,
                               allow_private=runtime.config.webhooks.allow_private,
                               hold=lambda conn: launch.holding(runtime.playbooks, conn),
                               authorise=webhooks.authoriser(runtime.config))
    if report.sent or report.failed or report.retried:
        log.info("webhooks posted", extra={"sent": report.sent, "retried": report.retried, "failed": report.failed})
    return report


def apply_retention(runtime: Runtime, engine: Engine, now: datetime | None = None,
                    stop: threading.Event | None = None) -> retention.Purged:
    """Drop old bodies and audit entries (`retention.*`); the daemon's leader runs it on a slow schedule."""
    keep = runtime.config.retention
    with metrics.CYCLE_SECONDS.labels("retention").time():
        purged = retention.apply(engine, now or utcnow(), keep.bodies, keep.audit, keep.batch, stop)
    if purged.bodies or purged.audit:
        log.info(purged.line(), extra={"bodies": purged.bodies, "audit": purged.audit})
    return purged


def refresh_reports(runtime: Runtime, engine: Engine, only: Collection[str] | None = None,
                    stop: threading.Event | None = None) -> RefreshReport:
    """Each playbook's report snapshot, one playbook per transaction; one that fails is logged with its
    traceback and counted in playbookd_report_refresh_failures, and the others are refreshed all the same."""
    found = RefreshReport()
    for playbook in runtime.playbooks:
        if (only is not None and playbook.id not in only) or (stop is not None and stop.is_set()):
            continue
        try:
            figures = snapshots.refresh(engine, playbook.id, playbook.goal is not None)
        except Exception as exc:  # a broken row or query for one playbook must not leave the others stale
            log.exception("report figures of playbook %s could not be refreshed", playbook.id,
                          extra={"playbook": playbook.id})
            metrics.REPORT_FAILURES.labels(playbook.id).inc()
            found.failed[playbook.id] = f"{type(exc).__name__}: {exc}"
        else:
            metrics.REPORT_SECONDS.observe(figures.seconds)
            found.refreshed[playbook.id] = figures.seconds
    configured = [p.id for p in runtime.playbooks]
    if only is None:
        snapshots.prune(engine, configured)
    snapshots.note_failures(engine, found.refreshed, found.failed, configured, utcnow())
    log.info(found.line(), extra={"refreshed": len(found.refreshed), "failed": len(found.failed)})
    return found


def advance_beside_delivery(runtime: Runtime, engine: Engine, now: datetime, report: CycleReport,
                            courier: Courier, clock: Callable[[], datetime]) -> None:
    """Due steps advanced while the courier, on a thread of its own, sends what each committed batch
    queued: the cycle takes about the longer of rendering and sending, not their sum. What it sent
    and why it failed go into `report`; an error that is not a sending process's is raised here, after
    the evaluation is recorded (note_evaluation) as soon as advance ends, whatever delivery does.

    On SQLite too: advance renders each batch's emails before it takes the one write lock
    (cadence.advance), which it then holds only to read again and write, so delivery's claims and
    outcomes commit between batches (bench/peer.py). The sending processes start first, so their
    start-up is not waited for afterwards."""
    courier.spawn()  # by this thread, which outlives the thread beside (a child dies with its starter)
    with Beside(lambda stop: deliver_due(runtime, engine, stop, clock, courier)) as beside:
        advance_due(runtime, engine, now, report)  # records the evaluation before delivery's end can fail
    report.delivery = merged([report.delivery, *beside.reports])
    report.errors += beside.errors
    report.stages["sent beside advance"] = float(sum(r.sent for r in beside.reports))


def run_once(runtime: Runtime, engine: Engine, at: datetime | None = None) -> CycleReport:
    """Exactly one full cycle, as `playbookd run --once` does."""
    started = time.monotonic()
    now = at or utcnow()
    report = CycleReport()
    with report.timed("sync"):
        report.sync = run_sync(runtime, engine, now=now)
    evaluate_due(runtime, engine, now, report)
    clock = FixedClock(now) if at else utcnow
    courier = new_courier(runtime, one_run=True)
    try:
        advance_beside_delivery(runtime, engine, now, report, courier, clock)
        with report.timed("deliver"):  # what advance queued after the last run beside it began
            try:
                report.delivery = merged([report.delivery, deliver_due(runtime, engine, clock=clock,
                                                                       courier=courier)])
            except SenderFailed as exc:  # what the other processes sent is reported all the same
                report.delivery = merged([report.delivery, exc.report])
                report.errors.append(str(exc))
    finally:
        courier.close()
    if report.delivery.paused:
        report.errors.append(report.delivery.paused)
    with report.timed("webhooks"):
        report.webhooks = post_webhooks(runtime, engine, clock=clock)
    with report.timed("retention"):
        report.purged = apply_retention(runtime, engine, now)
    with report.timed("reports"):
        report.reports = refresh_reports(runtime, engine)
    report.errors += [f"the report figures of {playbook} could not be refreshed: {why}"
                      for playbook, why in sorted(report.reports.failed.items())]
    finish(engine, report, started)
    return report


def finish(engine: Engine, report: CycleReport, started: float) -> None:
    """The cycle's time in state, and where it went in the log."""
    with report.timed("status"):
        report.seconds = time.monotonic() - started
        put(engine, "last_cycle", {"at": utcnow().isoformat(), "seconds": round(report.seconds, 3)})
    log.info(report.took(), extra={"stages": {stage: round(took, 3) for stage, took in report.stages.items()}})
