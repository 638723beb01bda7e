"""What the Playbooks pages show: the list with status and rates, and one playbook's YAML, funnel by
step, report (the numbers of `playbookd report`, from report.results) and daily charts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from playbookd.console.charts import Chart, bars
from playbookd.console.tables import Link, Table, href
from playbookd.errors import UserError
from playbookd.model.steps import EmailStep, Playbook, SetStep, Step, TaskStep, WaitStep, WebhookStep
from playbookd.runtime import Runtime
from playbookd.store.launch import statuses
from playbookd.store.schema import enrollments

if TYPE_CHECKING:
    from playbookd.report.results import PlaybookResult

CHART_DAYS = 60


def step_summary(step: Step) -> str:
    """One line per step, as a CSM reads it."""
    if isinstance(step, EmailStep):
        names = " / ".join(v.template for v in step.variants)
        return f"email {names} to {', '.join(step.to)}"
    if isinstance(step, WaitStep):
        return f"wait {step.span}"
    if isinstance(step, TaskStep):
        return f"task for {step.assign}: {step.title}"
    if isinstance(step, WebhookStep):
        return f"webhook {step.url}"
    if isinstance(step, SetStep):
        return "set " + ", ".join(step.values)
    return type(step).__name__


def rate(met: int, measured: int) -> float | None:
    return met / measured if measured else None


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def overview(rt: Runtime, engine: Engine) -> Table:
    """One row per playbook: one grouped scan of enrollments by (playbook, state, goal flags)."""
    met = func.sum(case((enrollments.c.goal_met_at.is_not(None), 1), else_=0))
    at_entry = func.sum(case((enrollments.c.goal_at_entry.is_(True), 1), else_=0))
    query = (select(enrollments.c.playbook_id, enrollments.c.state, func.count(), met, at_entry)
             .group_by(enrollments.c.playbook_id, enrollments.c.state))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with engine.connect() as conn:
        status = statuses(rt.playbooks, conn)
        for playbook_id, state, count, goal, entry in conn.execute(query):
            found = counts[playbook_id]
            found["entered"] += count
            found[state] += count
            found["met"] += int(goal or 0)
            found["at_entry"] += int(entry or 0)
    table = Table("playbooks", ("playbook", "name", "status", "entered", "active", "goal rate"))
    for p in sorted(rt.playbooks, key=lambda p: p.id):
        c = counts[p.id]
        goal = percent(rate(c["met"], c["entered"] - c["at_entry"])) if p.goal else "no goal"
        table.rows.append((Link(p.id, href("playbooks", p.id)), p.name, status.get(p.id, p.status), c["entered"],
                           c["active"], goal))
    return table


@dataclass
class PlaybookPage:
    playbook: Playbook
    status: str
    yaml: str
    funnel: Table
    result: PlaybookResult
    totals: Table
    groups: Table
    comparisons: Table
    entered_chart: Chart
    goals_chart: Chart


def find(rt: Runtime, playbook_id: str) -> Playbook:
    found = rt.playbook(playbook_id)
    if found is None:
        raise UserError(f"no playbook {playbook_id!r}")
    return found


def _yaml(playbook: Playbook) -> str:
    try:
        return Path(playbook.file).read_text(encoding="utf-8")
    except OSError as exc:
        return f"# {playbook.file} cannot be read: {exc.strerror}"


def funnel(engine: Engine, playbook: Playbook) -> Table:
    """Per step: the enrollments waiting at it (active) and those past it, from one grouped query on
    the (playbook, account) index; `step` is the index of the next step to run."""
    query = (select(enrollments.c.step, enrollments.c.state, func.count())
             .where(enrollments.c.playbook_id == playbook.id).group_by(enrollments.c.step, enrollments.c.state))
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    table = Table("funnel", ("step", "what", "waiting here (active)", "failed here", "reached it", "past it"))
    for index, step in enumerate(playbook.steps):
        waiting = sum(n for s, state, n in rows if s == index and state == "active")
        failed = sum(n for s, state, n in rows if s == index and state == "failed")
        reached = sum(n for s, _, n in rows if s >= index)
        past = sum(n for s, _, n in rows if s > index)
        table.rows.append((index + 1, step_summary(step), waiting, failed, reached, past))
    return table


def _daily(engine: Engine, playbook_id: str, column: Any, since: datetime) -> list[tuple[str, int]]:
    day = func.date(column)
    query = (select(day, func.count()).where(enrollments.c.playbook_id == playbook_id, column >= since)
             .group_by(day).order_by(day))
    with engine.connect() as conn:
        found = {str(d): int(n) for d, n in conn.execute(query)}
    days = [(since + timedelta(days=i)).date().isoformat() for i in range(CHART_DAYS + 1)]
    return [(d, found.get(d, 0)) for d in days]


def _report_tables(result: PlaybookResult) -> tuple[Table, Table, Table]:
    totals = Table("report", ("measure", "value"))
    totals.rows += [("entered", result.entered), *((f"state {k}", v) for k, v in sorted(result.states.items())),
                    *((f"exited: {k}", v) for k, v in sorted(result.exited.items())),
                    *((f"emails {k}", v) for k, v in sorted(result.emails.items())),
                    *((f"skipped: {k}", v) for k, v in sorted(result.skipped.items())),
                    *((f"tasks {k}", v) for k, v in sorted(result.tasks.items())),
                    ("goal met", result.met if result.has_goal else "no goal"), ("met at entry", result.met_at_entry),
                    ("goal rate", percent(result.rate)),
                    ("median time to goal (days)",
                     "-" if result.median_seconds is None else round(result.median_seconds / 86400, 1))]
    groups = Table("groups", ("group", "entered", "met at entry", "goal met", "rate", "emails sent",
                              "unsubscribe rate", "complaint rate", "click rate"))
    groups.rows += [(g.name, g.entered, g.met_at_entry, g.goal_met, percent(g.rate), g.emails_sent,
                     percent(g.unsubscribe_rate), percent(g.complaint_rate), percent(g.click_rate))
                    for g in result.ordered_groups()]
    comparisons = Table("comparisons", ("group", "versus", "lift", "95% interval", "p-value", "note"),
                        empty="No comparisons: no control group or variants, or no goal.")
    comparisons.rows += [(c.group, c.versus, percent(c.lift),
                          "-" if c.ci95 is None else f"{percent(c.ci95[0])} to {percent(c.ci95[1])}",
                          "-" if c.p_value is None else f"{c.p_value:.3f}", c.note or "")
                         for c in result.comparisons]
    return totals, groups, comparisons


def page(rt: Runtime, engine: Engine, playbook_id: str, now: datetime) -> PlaybookPage:
    # imported here: the report's statistics load scipy, seconds the daemon should not spend at start
    from playbookd.report.results import Scope, report

    playbook = find(rt, playbook_id)
    with engine.connect() as conn:
        status = statuses(rt.playbooks, conn).get(playbook.id, playbook.status)
    result = report(engine, Scope(playbook=playbook.id), {playbook.id: playbook.goal is not None})[0]
    since = (now - timedelta(days=CHART_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    entered = bars("Enrollments per day", _daily(engine, playbook.id, enrollments.c.entered_at, since))
    goals = bars("Goals met per day", _daily(engine, playbook.id, enrollments.c.goal_met_at, since))
    return PlaybookPage(playbook, status, _yaml(playbook), funnel(engine, playbook), result,
                        *_report_tables(result), entered, goals)
