"""Sync: type and check each source's rows, upsert them in chunks, remember previous values.

A row whose digest is the one stored with its account or contact is unchanged and goes no further
(sync.digests). Every chunk of about a thousand other rows is one transaction: one SELECT of what
exists, diffs in Python, bulk writes (store.bulk). A bad row is reported and skipped whole; the others
are applied. A
source that cannot be read to its end applies nothing (sync.base) and fails alone: the others
still sync, and its state (sync.health) says so until it is read again.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Engine

from playbookd.config.settings import Config, Source
from playbookd.errors import Problem, UserError
from playbookd.sources.base import SourceError
from playbookd.sources.registry import source_columns
from playbookd.store import audit as A
from playbookd.store.accounts import load_account_types
from playbookd.store.database import transaction, utcnow
from playbookd.sync import health
from playbookd.sync.accounts import AccountRun
from playbookd.sync.base import Run, SourceReport, SyncReport, Touched
from playbookd.sync.contacts import ContactRun, EventRun
from playbookd.sync.scores import Inline
from playbookd.sync.scores import refresh as rescore
from playbookd.sync.segments import Segmenter
from playbookd.workers.child import FIRST_GENERATION

ENTITIES = ("accounts", "contacts", "events")
__all__ = ["SourceReport", "SyncReport", "sync"]


RUNS: dict[str, type[Run]] = {"accounts": AccountRun, "contacts": ContactRun, "events": EventRun}


def _chosen(config: Config, only: Sequence[str] | None) -> list[Source]:
    names = [s.name for s in config.sources]
    unknown = [n for n in only or () if n not in names]
    if unknown:
        raise UserError(f"unknown source {', '.join(map(repr, unknown))}; "
                        f"sources are: {', '.join(names) or '(none configured)'}")
    picked = [s for s in config.sources if only is None or s.name in only]
    return sorted(picked, key=lambda s: ENTITIES.index(s.entity))  # stable: config order kept


def _check_segments(engine: Engine, config: Config, now: datetime) -> None:
    """Refuse a bad segment condition before any row is written."""
    names: dict[str, str | None] = {}
    for source in config.sources:
        if source.entity == "accounts":
            try:
                names.update(dict.fromkeys(source_columns(source)))
            except SourceError:
                continue  # reported by the source's own run
    with engine.connect() as conn:
        Segmenter(config, {**names, **load_account_types(conn)}, now)


def _record(engine: Engine, report: SourceReport, now: datetime, retry_in: health.RetryIn | None) -> None:
    with transaction(engine) as conn:
        health.record(conn, report, now, retry_in)
        detail = {"source": report.source, "entity": report.entity, **report.counts()}
        A.record(conn, A.SYNCED, reason=report.source, at=now,
                 detail={**detail, "error": report.failure} if report.failure else detail)


def _failed(report: SourceReport, exc: SourceError) -> None:
    reason = exc.reason
    if report.read:
        reason += f" (after {report.read} row(s); nothing from this source was applied)"
    problem = Problem(exc.file, exc.line, None, reason)
    report.problems.append(problem)
    report.failure, report.unreachable = str(problem), exc.unreachable


class _Collector:
    """A sync makes a few objects per value of every row, most freed as soon as made, so the cyclic
    collector ran a thousand times in a 20,000-account first sync, each full pass going over every
    object of the process (its modules, config, engine): a tenth of the sync's CPU. While syncs run
    (one or several threads), what existed before is kept out of those passes (gc.freeze) and a
    pass comes after FIRST_GENERATION new objects (as in a worker), not 700; garbage cycles are
    still collected, a little later."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.threshold = gc.get_threshold()
        self.frozen = False  # whether the objects frozen are ours to unfreeze

    @contextmanager
    def aside(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
            if self.running == 1:
                self.threshold = gc.get_threshold()
                self.frozen = gc.get_freeze_count() == 0  # what someone else froze stays frozen
                gc.freeze()
                gc.set_threshold(max(self.threshold[0], FIRST_GENERATION), *self.threshold[1:])
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1
                if self.running == 0:  # the last sync running sets the collector back
                    gc.set_threshold(*self.threshold)
                    if self.frozen:
                        gc.unfreeze()


_COLLECTOR = _Collector()


def sync(engine: Engine, config: Config, only: Sequence[str] | None = None, now: datetime | None = None,
         retry_in: Callable[[Source, int], timedelta] | None = None) -> SyncReport:
    """Sync the sources (accounts, then contacts, then events); bad rows end up in the report.
    `retry_in(source, attempts)`: when a source that could not be read is tried again (the daemon's
    schedule), recorded as its `next_retry`."""
    with _COLLECTOR.aside():
        return _sync(engine, config, only, now, retry_in)


def _sync(engine: Engine, config: Config, only: Sequence[str] | None, now: datetime | None,
          retry_in: Callable[[Source, int], timedelta] | None) -> SyncReport:
    now = now or utcnow()
    chosen = _chosen(config, only)
    _check_segments(engine, config, now)
    reports = []
    inline = Inline(engine, config, now)
    touched = Touched()
    people = [s for s in chosen if s.entity == "contacts"]
    for source in chosen:
        # health is scored in the contacts write of the last contacts source alone: an earlier one
        # would score an account another source's contacts still change (a move that never was)
        touched.scorer = inline if people and source is people[-1] else None
        report = SourceReport(source.name, source.entity)
        try:
            RUNS[source.entity](engine, config, source, report, now, touched).run()
        except SourceError as exc:  # this source alone: the others still sync
            _failed(report, exc)
        report.problems.sort(key=lambda p: (p.file, p.line or 0))  # file order, whatever found them
        _record(engine, report, now, None if retry_in is None else functools.partial(retry_in, source))
        reports.append(report)
    scored = None
    if any(s.entity != "events" for s in chosen):  # events move no field
        done = rescore(engine, config, now, touched, inline)
        scored = None if done is None else done.line()
    return SyncReport(reports, scored)
