"""Prometheus metrics: what the store holds (read at scrape time) and what this process did.

Counts of accounts, enrollments and emails come from the database on each scrape, so every
replica reports the same truth and nothing drifts after a restart; latencies and durations
are this process's own histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from playbookd.delivery.circuit import current as open_circuit
from playbookd.delivery.transports import Timed, Transport
from playbookd.store.audit import EVALUATION_FAILED
from playbookd.store.database import aware, utcnow
from playbookd.store.schema import accounts, audit, enrollments, outbox, report_snapshots, suppressions, tasks
from playbookd.sync import health

REGISTRY = CollectorRegistry(auto_describe=True)
SEND_SECONDS = Histogram("playbookd_send_seconds", "Time to hand one email to the transport",
                         ["transport"], registry=REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CYCLE_SECONDS = Histogram("playbookd_cycle_seconds", "Duration of a sync or an evaluation pass", ["stage"],
                          registry=REGISTRY, buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
EVALUATIONS = Counter("playbookd_evaluations", "Evaluation passes run by this process", registry=REGISTRY)
ENROLLED = Counter("playbookd_enrolled", "Enrollments created by this process", registry=REGISTRY)
SYNCED_ROWS = Counter("playbookd_synced_rows", "Source rows read by this process", ["source"], registry=REGISTRY)
CLICKS = Counter("playbookd_link_fetches", "Tracked links fetched, by kind (clicked, scanned, unknown_message)",
                 ["kind"], registry=REGISTRY)
REPORT_SECONDS = Histogram("playbookd_report_refresh_seconds", "Time to compute one playbook's report figures "
                           "for the console", registry=REGISTRY, buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
REPORT_FAILURES = Counter("playbookd_report_refresh_failures", "Playbooks whose report figures could not be "
                          "refreshed (the log has each error)", ["playbook"], registry=REGISTRY)
SENDER_FAILURES = Counter("playbookd_sender_failures", "Delivery runs in which a sending process "
                          "(delivery.processes) failed or died (the log has each error)", registry=REGISTRY)
HTTP_CUT = Counter("playbookd_http_cut", "HTTP connections and requests the listener cut short, by reason "
                   "(slow_headers, evicted, busy, slow_body, too_large)", ["reason"], registry=REGISTRY)


def _grouped(engine: Engine, column: Any) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(str(k), int(n)) for k, n in conn.execute(select(column, func.count()).group_by(column))]


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _failed_evaluations(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit)
                                .where(audit.c.event == EVALUATION_FAILED)).scalar_one())


class StoreCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> list[Any]:
        return []  # values come from the database at scrape time only

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield self._labelled("playbookd_accounts", "Accounts in the store by segment", "segment", accounts.c.segment)
        yield self._labelled("playbookd_enrollments", "Enrollments by state", "state", enrollments.c.state)
        yield self._labelled("playbookd_emails", "Outbox messages by state", "state", outbox.c.state)
        open_tasks = GaugeMetricFamily("playbookd_tasks", "CSM tasks by state", labels=["state"])
        for state, n in _grouped(self.engine, tasks.c.state):
            open_tasks.add_metric([state], n)
        yield open_tasks
        yield GaugeMetricFamily("playbookd_suppressed", "Suppressed (address, category) pairs",
                                value=_count(self.engine, suppressions))
        with self.engine.connect() as conn:
            paused = open_circuit(conn)
        yield GaugeMetricFamily("playbookd_smtp_circuit_open", "1 while delivery is paused because the mail server "
                                "refuses our mail for its policy or our setup (5.7.x)", value=int(paused is not None))
        yield CounterMetricFamily("playbookd_evaluation_failures", "Accounts the rules engine could not "
                                  "evaluate, every replica together", value=_failed_evaluations(self.engine))
        yield from self._sources()
        yield self._figures_age()

    def _figures_age(self) -> GaugeMetricFamily:
        age = GaugeMetricFamily("playbookd_report_figures_age_seconds", "How old each playbook's report figures "
                                "in the console are (growing past report.refresh_every: the refresh fails)",
                                labels=["playbook"])
        now = utcnow()
        with self.engine.connect() as conn:
            for playbook, at in conn.execute(select(report_snapshots.c.playbook_id, report_snapshots.c.computed_at)):
                computed = aware(at)
                assert computed is not None
                age.add_metric([str(playbook)], (now - computed).total_seconds())
        return age

    def _sources(self) -> Iterator[GaugeMetricFamily]:
        failing = GaugeMetricFamily("playbookd_source_failing", "1 when the latest sync of the source could "
                                    "not read it (down, changing while read, unreadable)", labels=["source"])
        attempts = GaugeMetricFamily("playbookd_source_failed_attempts", "Syncs in a row that could not read "
                                     "the source", labels=["source"])
        for name, value in health.states(self.engine).items():
            failing.add_metric([name], 0 if value.get("ok", True) else 1)
            attempts.add_metric([name], int(value.get("attempts") or 0))
        yield failing
        yield attempts

    def _labelled(self, name: str, doc: str, label: str, column: Any) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=[label])
        for value, n in _grouped(self.engine, column):
            family.add_metric([value], n)
        return family


def exposition(engine: Engine) -> bytes:
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine))
    return generate_latest(REGISTRY) + generate_latest(registry)


def observe_sends(transport: str, seconds: list[float]) -> None:
    """Send times measured in the sending processes (delivery.senders), which have no /metrics of their own."""
    histogram = SEND_SECONDS.labels(transport)
    for value in seconds:
        histogram.observe(value)


def timed(inner: Transport) -> Transport:
    """`inner`, each send's latency, failures included, observed in playbookd_send_seconds."""
    return Timed(inner, lambda name, seconds: SEND_SECONDS.labels(name).observe(seconds))
