"""`playbookd report`: per playbook, what happened to the enrollments that entered in the period, what
was sent, and the goal; per group, the goal rate and the unsubscribe and complaint rates; and each
variant compared with the control group and with the other variants of its step.

Everything is counted in the store (SQL aggregates), so the numbers are exact; the statistics are in
`stats`. Enrollments are selected by entry time, so a period's report is the cohort that entered in it.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

from sqlalchemy import Connection, Select, and_, case, distinct, exists, func, or_, select
from sqlalchemy.engine import Engine

from playbookd.model.steps import CONTROL, TREATMENT, group_parts
from playbookd.report.stats import MIN_MEASURED, NOT_ENOUGH, difference
from playbookd.store.database import aware
from playbookd.store.schema import accounts, audit, clicks, enrollments, outbox, suppressions, tasks

UNGROUPED = "ungrouped"  # enrollments made before groups were recorded
OPERATOR = "ended by an operator"


@dataclass(frozen=True)
class Scope:
    playbook: str | None = None
    since: datetime | None = None  # entered at or after
    until: datetime | None = None  # entered before
    segment: str | None = None  # the account's segment at entry


@dataclass
class Group:
    name: str
    family: int | None = None  # the variant step it belongs to (variants of one step are compared)
    has_goal: bool = True
    entered: int = 0
    met_at_entry: int = 0
    goal_met: int = 0
    emails_sent: int = 0
    recipients: int = 0
    unsubscribed: int = 0
    complained: int = 0
    emailed: int = 0  # enrollments sent at least one email
    clicked: int = 0  # of those, the ones with a click on a tracked link (scanners not counted)

    @property
    def click_rate(self) -> float | None:
        return self.clicked / self.emailed if self.emailed else None

    @property
    def measured(self) -> int:
        return self.entered - self.met_at_entry

    @property
    def rate(self) -> float | None:
        return self.goal_met / self.measured if self.has_goal and self.measured else None

    @property
    def unsubscribe_rate(self) -> float | None:
        return self.unsubscribed / self.recipients if self.recipients else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.recipients if self.recipients else None


@dataclass(frozen=True)
class Comparison:
    group: str
    versus: str
    lift: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    note: str | None = None


@dataclass
class PlaybookResult:
    playbook: str
    has_goal: bool = True
    entered: int = 0
    states: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    emails: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    met: int = 0
    met_at_entry: int = 0
    median_seconds: float | None = None
    groups: dict[str, Group] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        measured = self.entered - self.met_at_entry
        return self.met / measured if self.has_goal and measured else None

    def group(self, name: str, family: int | None) -> Group:
        return self.groups.setdefault(name, Group(name, family))

    def ordered_groups(self) -> list[Group]:
        rank = {CONTROL: 0, UNGROUPED: 2}
        return sorted(self.groups.values(), key=lambda g: (rank.get(g.name, 1), g.name))


def _outbox_state() -> Any:
    """outbox.state for a filter that must not pick an index: `state = 'sent'` reads as selective to
    SQLite's planner, which would then start from every sent email in the store, of every playbook,
    instead of from the playbook's enrollments (the same value: state is never NULL)."""
    return func.coalesce(outbox.c.state, "")


def _in_scope(query: Select[Any], scope: Scope) -> Select[Any]:
    if scope.playbook is not None:
        query = query.where(enrollments.c.playbook_id == scope.playbook)
    if scope.since is not None:
        query = query.where(enrollments.c.entered_at >= scope.since)
    if scope.until is not None:
        query = query.where(enrollments.c.entered_at < scope.until)
    if scope.segment is not None:
        # enrollments from before the segment was recorded at entry go by the account's segment now
        current = select(accounts.c.segment).where(accounts.c.id == enrollments.c.account_id).scalar_subquery()
        query = query.where(func.coalesce(enrollments.c.segment, current) == scope.segment)
    return query


def _parts(group_name: str | None) -> list[tuple[str, int | None]]:
    if group_name is None:
        return [(UNGROUPED, None)]
    if group_name in (CONTROL, TREATMENT):
        return [(group_name, None)]
    return [(part, index) for index, part in enumerate(group_parts(group_name))]


def _reason(text: str | None) -> str:
    return OPERATOR if text and text.startswith(OPERATOR) else text or "unknown"


def _enrollments(conn: Connection, scope: Scope, results: dict[str, PlaybookResult]) -> None:
    """Counts from the covering index ix_enrollments_report alone; the exit reasons (a text column the
    index leaves out) in a second query over the exited rows only."""
    met = case((enrollments.c.goal_met_at.is_not(None), 1), else_=0)
    at_entry = case((enrollments.c.goal_at_entry.is_(True), 1), else_=0)
    columns = (enrollments.c.playbook_id, enrollments.c.group_name, enrollments.c.state, at_entry, met)
    query = _in_scope(select(*columns, func.count()).group_by(*columns), scope)
    for playbook, group_name, state, entry, goal, count in conn.execute(query):
        result = results.setdefault(playbook, PlaybookResult(playbook))
        result.entered += count
        result.states[state] += count
        result.met += goal * count
        result.met_at_entry += entry * count
        for name, family in _parts(group_name):
            group = result.group(name, family)
            group.entered += count
            group.goal_met += goal * count
            group.met_at_entry += entry * count
    exits = (select(enrollments.c.playbook_id, enrollments.c.reason, func.count())
             .where(enrollments.c.state == "exited").group_by(enrollments.c.playbook_id, enrollments.c.reason))
    for playbook, why, count in conn.execute(_in_scope(exits, scope)):
        results[playbook].exited[_reason(why)] += count


def _median_time_to_goal(conn: Connection, scope: Scope, results: dict[str, PlaybookResult]) -> None:
    query = _in_scope(select(enrollments.c.playbook_id, enrollments.c.entered_at, enrollments.c.goal_met_at)
                      .where(enrollments.c.goal_met_at.is_not(None)), scope)
    seconds: dict[str, list[float]] = {}
    for playbook, entered, met in conn.execute(query):
        start, end = aware(entered), aware(met)
        assert start is not None and end is not None
        seconds.setdefault(playbook, []).append((end - start).total_seconds())
    for playbook, values in seconds.items():
        results[playbook].median_seconds = statistics.median(values)


def _emails(conn: Connection, scope: Scope, results: dict[str, PlaybookResult]) -> None:
    # counted from the covering index ix_outbox_report (an outbox row is wide: its html and text);
    # only the skipped rows are read for their reason
    joined = enrollments.join(outbox, outbox.c.enrollment_id == enrollments.c.id)
    columns = (enrollments.c.playbook_id, enrollments.c.group_name, outbox.c.state)
    for playbook, group_name, state, count in conn.execute(
            _in_scope(select(*columns, func.count()).select_from(joined).group_by(*columns), scope)):
        result = results[playbook]
        result.emails[state] += count
        if state == "sent":
            for name, family in _parts(group_name):
                result.group(name, family).emails_sent += count
    skipped = (select(enrollments.c.playbook_id, outbox.c.last_error, func.count()).select_from(joined)
               .where(_outbox_state() == "skipped").group_by(enrollments.c.playbook_id, outbox.c.last_error))
    for playbook, reason, count in conn.execute(_in_scope(skipped, scope)):
        results[playbook].skipped[reason or "unknown"] += count
    # a contact left out when the step ran (unsubscribed, bounced ...) never got an outbox row
    queue_skips = (select(enrollments.c.playbook_id, audit.c.reason, func.count())
                   .select_from(audit.join(enrollments, audit.c.enrollment_id == enrollments.c.id))
                   .where(audit.c.event == "step_skipped", audit.c.contact.is_not(None))
                   .group_by(enrollments.c.playbook_id, audit.c.reason))
    for playbook, reason, count in conn.execute(_in_scope(queue_skips, scope)):
        results[playbook].emails["skipped"] += count
        results[playbook].skipped[reason or "unknown"] += count


def _suppressed_after(reason: str, any_category: bool) -> Any:
    """The recipient was suppressed for `reason` after this message reached them."""
    category = or_(suppressions.c.category == outbox.c.category, suppressions.c.category == "*")
    return exists().where(and_(suppressions.c.email == outbox.c.to_addr, suppressions.c.reason == reason,
                               suppressions.c.created_at >= outbox.c.sent_at,
                               *(() if any_category else (category,))))


def _guardrails(conn: Connection, scope: Scope, results: dict[str, PlaybookResult]) -> None:
    """Per group: the addresses emailed, how many of them unsubscribed or complained afterwards, and the
    enrollments emailed and how many of them clicked."""
    joined = enrollments.join(outbox, outbox.c.enrollment_id == enrollments.c.id)
    clicked = exists().where(clicks.c.enrollment_id == enrollments.c.id, clicks.c.kind == "clicked")
    query = (select(enrollments.c.playbook_id, enrollments.c.group_name, func.count(distinct(outbox.c.to_addr)),
                    func.count(distinct(case((_suppressed_after("unsubscribed", False), outbox.c.to_addr)))),
                    func.count(distinct(case((_suppressed_after("complaint", True), outbox.c.to_addr)))),
                    func.count(distinct(enrollments.c.id)), func.count(distinct(case((clicked, enrollments.c.id)))))
             .select_from(joined).where(_outbox_state() == "sent")
             .group_by(enrollments.c.playbook_id, enrollments.c.group_name))
    for playbook, group_name, recipients, unsubscribed, complained, emailed, clicks_ in conn.execute(
            _in_scope(query, scope)):
        for name, family in _parts(group_name):
            group = results[playbook].group(name, family)
            group.recipients += recipients
            group.unsubscribed += unsubscribed
            group.complained += complained
            group.emailed += emailed
            group.clicked += clicks_


def _tasks(conn: Connection, scope: Scope, results: dict[str, PlaybookResult]) -> None:
    joined = tasks.join(enrollments, tasks.c.enrollment_id == enrollments.c.id)
    query = (select(enrollments.c.playbook_id, tasks.c.state, func.count()).select_from(joined)
             .group_by(enrollments.c.playbook_id, tasks.c.state))
    for playbook, state, count in conn.execute(_in_scope(query, scope)):
        results[playbook].tasks[state] += count


def compare(group: Group, versus: Group) -> Comparison:
    if min(group.measured, versus.measured) < MIN_MEASURED:
        return Comparison(group.name, versus.name, None, None, None, NOT_ENOUGH)
    found = difference(group.goal_met, group.measured, versus.goal_met, versus.measured)
    return Comparison(group.name, versus.name, found.lift, found.ci95, found.p_value)


def comparisons(groups: Iterable[Group]) -> list[Comparison]:
    """Each treated group against control, then the variants of each step against each other."""
    ordered = sorted(groups, key=lambda g: g.name)
    control = next((g for g in ordered if g.name == CONTROL), None)
    treated = [g for g in ordered if g.name not in (CONTROL, UNGROUPED)]
    found = [compare(g, control) for g in treated] if control is not None else []
    variants = [g for g in treated if g.family is not None]
    found += [compare(a, b) for a, b in combinations(variants, 2) if a.family == b.family]
    return found


def report(engine: Engine, scope: Scope, has_goal: Mapping[str, bool] | None = None) -> list[PlaybookResult]:
    """One result per playbook with enrollments in scope (and the asked-for playbook even without);
    `has_goal` tells which configured playbooks have a goal (a playbook not in it is assumed to)."""
    results: dict[str, PlaybookResult] = {}
    with engine.connect() as conn:
        _enrollments(conn, scope, results)
        _median_time_to_goal(conn, scope, results)
        _emails(conn, scope, results)
        _guardrails(conn, scope, results)
        _tasks(conn, scope, results)
    if scope.playbook is not None:
        results.setdefault(scope.playbook, PlaybookResult(scope.playbook))
    for result in results.values():
        result.has_goal = (has_goal or {}).get(result.playbook, True)
        for group in result.groups.values():
            group.has_goal = result.has_goal
        result.comparisons = comparisons(result.groups.values()) if result.has_goal else []
    return [results[key] for key in sorted(results)]
