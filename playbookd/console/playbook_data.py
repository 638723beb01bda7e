"""What the Playbooks pages show: the list with status and rates, and one playbook's YAML, funnel by
step, report (the numbers of `playbookd report`) and daily charts, from its figures (report.figures):
counted live for a small playbook, else as the daemon last stored them (report.snapshots)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from sqlalchemy import Connection, case, func, select
from sqlalchemy.engine import Engine

from playbookd.console.charts import Chart, bars
from playbookd.console.tables import Link, Table, href
from playbookd.errors import UserError
from playbookd.model.steps import EmailStep, Playbook, SetStep, Step, TaskStep, WaitStep, WebhookStep
from playbookd.report import snapshots
from playbookd.report.figures import Figures
from playbookd.runtime import Runtime
from playbookd.store.launch import statuses
from playbookd.store.schema import enrollments

NOT_YET = ("Not computed yet: the daemon's leader computes this playbook's figures every report.refresh_every, "
           "or `playbookd report --refresh` does now.")


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


def ago(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "under a minute ago"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 48 * 60 else f"{minutes // 1440} days ago"


def as_of(figures: Figures | None, now: datetime, tz: tzinfo) -> str:
    """What the figures' age is, as the pages say it."""
    if figures is None:
        return "not computed yet"
    if figures.live:
        return "live"
    at, today = figures.computed_at.astimezone(tz), now.astimezone(tz).date()
    shown = at.strftime("%H:%M %Z" if at.date() == today else "%Y-%m-%d %H:%M %Z")
    return f"as of {shown} ({ago(now - figures.computed_at)})"


def _live_counts(conn: Connection, playbook_ids: list[str]) -> dict[str, dict[str, int]]:
    """One grouped scan of the enrollments of these playbooks by (playbook, state, goal flags)."""
    met = func.sum(case((enrollments.c.goal_met_at.is_not(None), 1), else_=0))
    at_entry = func.sum(case((enrollments.c.goal_at_entry.is_(True), 1), else_=0))
    query = (select(enrollments.c.playbook_id, enrollments.c.state, func.count(), met, at_entry)
             .where(enrollments.c.playbook_id.in_(playbook_ids))
             .group_by(enrollments.c.playbook_id, enrollments.c.state))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for playbook_id, state, count, goal, entry in conn.execute(query):
        found = counts[playbook_id]
        found["entered"] += count
        found[state] += count
        found["met"] += int(goal or 0)
        found["at_entry"] += int(entry or 0)
    return counts


def _snapshot_counts(figures: Figures) -> dict[str, int]:
    r = figures.result
    return {"entered": r.entered, "active": r.states["active"], "met": r.met, "at_entry": r.met_at_entry}


def overview(rt: Runtime, engine: Engine, now: datetime) -> Table:
    """One row per playbook: counted live for those under report.live_under enrollments (one grouped
    scan of theirs), read from the snapshot for the others."""
    live_under = rt.config.report.live_under
    with engine.connect() as conn:
        status = statuses(rt.playbooks, conn)
        stored = snapshots.load_all(conn)
        small = [p.id for p in rt.playbooks if not snapshots.at_least(conn, p.id, live_under)]
        counts = _live_counts(conn, small) if small else {}
    table = Table("playbooks", ("playbook", "name", "status", "entered", "active", "goal rate", "figures"))
    for p in sorted(rt.playbooks, key=lambda p: p.id):
        found = stored.get(p.id) if p.id not in small else None
        c = _snapshot_counts(found) if found is not None else counts.get(p.id, defaultdict(int))
        known = p.id in small or found is not None
        goal = percent(rate(c["met"], c["entered"] - c["at_entry"])) if p.goal else "no goal"
        age = "live" if p.id in small else as_of(found, now, rt.config.tz)
        table.rows.append((Link(p.id, href("playbooks", p.id)), p.name, status.get(p.id, p.status),
                           *((c["entered"], c["active"], goal) if known else ("-", "-", "-")), age))
    return table


@dataclass
class PlaybookPage:
    playbook: Playbook
    status: str
    yaml: str
    figures: Figures | None  # None: a large playbook not yet computed
    as_of: str
    funnel: Table
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


def funnel(playbook: Playbook, figures: Figures | None) -> Table:
    """Per step: the enrollments waiting at it (active) and those past it."""
    rows = figures.steps if figures is not None else []
    table = Table("funnel", ("step", "what", "waiting here (active)", "failed here", "reached it", "past it"),
                  empty=NOT_YET)
    if figures is None:
        return table
    for index, step in enumerate(playbook.steps):
        waiting = sum(n for s, state, n in rows if s == index and state == "active")
        failed = sum(n for s, state, n in rows if s == index and state == "failed")
        reached = sum(n for s, _, n in rows if s >= index)
        past = sum(n for s, _, n in rows if s > index)
        table.rows.append((index + 1, step_summary(step), waiting, failed, reached, past))
    return table


def _charts(figures: Figures | None) -> tuple[Chart, Chart]:
    days = figures.days() if figures is not None else []
    entered = figures.entered_daily if figures is not None else {}
    goals = figures.goals_daily if figures is not None else {}
    return (bars("Enrollments per day", [(d, entered.get(d, 0)) for d in days]),
            bars("Goals met per day", [(d, goals.get(d, 0)) for d in days]))


def _report_tables(figures: Figures | None) -> tuple[Table, Table, Table]:
    totals = Table("report", ("measure", "value"), empty=NOT_YET)
    groups = Table("groups", ("group", "entered", "met at entry", "goal met", "rate", "emails sent",
                              "unsubscribe rate", "complaint rate", "click rate"), empty=NOT_YET)
    comparisons = Table("comparisons", ("group", "versus", "lift", "95% interval", "p-value", "note"),
                        empty="No comparisons: no control group or variants, or no goal.")
    if figures is None:
        comparisons.empty = NOT_YET
        return totals, groups, comparisons
    result = figures.result
    totals.rows += [("entered", result.entered), *((f"state {k}", v) for k, v in sorted(result.states.items())),
                    *((f"exited: {k}", v) for k, v in sorted(result.exited.items())),
                    *((f"emails {k}", v) for k, v in sorted(result.emails.items())),
                    *((f"skipped: {k}", v) for k, v in sorted(result.skipped.items())),
                    *((f"tasks {k}", v) for k, v in sorted(result.tasks.items())),
                    ("goal met", result.met if result.has_goal else "no goal"), ("met at entry", result.met_at_entry),
                    ("goal rate", percent(result.rate)),
                    ("median time to goal (days)",
                     "-" if result.median_seconds is None else round(result.median_seconds / 86400, 1))]
    groups.rows += [(g.name, g.entered, g.met_at_entry, g.goal_met, percent(g.rate), g.emails_sent,
                     percent(g.unsubscribe_rate), percent(g.complaint_rate), percent(g.click_rate))
                    for g in result.ordered_groups()]
    comparisons.rows += [(c.group, c.versus, percent(c.lift),
                          "-" if c.ci95 is None else f"{percent(c.ci95[0])} to {percent(c.ci95[1])}",
                          "-" if c.p_value is None else f"{c.p_value:.3f}", c.note or "")
                         for c in result.comparisons]
    return totals, groups, comparisons


def page(rt: Runtime, engine: Engine, playbook_id: str, now: datetime) -> PlaybookPage:
    playbook = find(rt, playbook_id)
    with engine.connect() as conn:
        status = statuses(rt.playbooks, conn).get(playbook.id, playbook.status)
    figures = snapshots.figures_for(engine, playbook.id, playbook.goal is not None, rt.config.report.live_under, now)
    return PlaybookPage(playbook, status, _yaml(playbook), figures, as_of(figures, now, rt.config.tz),
                        funnel(playbook, figures), *_report_tables(figures), *_charts(figures))
