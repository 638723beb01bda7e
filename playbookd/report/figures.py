"""A playbook's figures as its console page shows them: the report over every enrollment so far (the
numbers of `playbookd report --playbook ID`), the enrollments by step and state (the funnel), and
enrollments and goals met per day; computed together, and turned into JSON and back for a snapshot."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.engine import Engine

from playbookd.report.results import Comparison, Group, PlaybookResult, Scope, report
from playbookd.store.schema import enrollments

CHART_DAYS = 60
FORMAT = 1  # the layout of as_json; a snapshot in another one is not read


@dataclass
class Figures:
    result: PlaybookResult
    computed_at: datetime
    steps: list[tuple[int, str, int]] = field(default_factory=list)  # (index of the next step, state, enrollments)
    entered_daily: dict[str, int] = field(default_factory=dict)  # ISO day -> enrollments, days since chart_start
    goals_daily: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # how long computing them took
    live: bool = False  # counted for this view, not read from a snapshot

    @property
    def playbook(self) -> str:
        return self.result.playbook

    def days(self) -> list[str]:
        """The charts' days, oldest first, ending on the day the figures were computed."""
        start = chart_start(self.computed_at)
        return [(start + timedelta(days=i)).date().isoformat() for i in range(CHART_DAYS + 1)]


def chart_start(now: datetime) -> datetime:
    return (now - timedelta(days=CHART_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)


def _steps(conn: Connection, playbook_id: str) -> list[tuple[int, str, int]]:
    """From one grouped query on the (playbook, ...) index; `step` is the index of the next step to run."""
    query = (select(enrollments.c.step, enrollments.c.state, func.count())
             .where(enrollments.c.playbook_id == playbook_id).group_by(enrollments.c.step, enrollments.c.state))
    return sorted((int(s), str(state), int(n)) for s, state, n in conn.execute(query))


def _daily(conn: Connection, playbook_id: str, column: Any, since: datetime) -> dict[str, int]:
    day = func.date(column)
    query = (select(day, func.count()).where(enrollments.c.playbook_id == playbook_id, column >= since)
             .group_by(day).order_by(day))
    return {str(d): int(n) for d, n in conn.execute(query)}


def compute(engine: Engine, playbook_id: str, has_goal: bool, now: datetime, live: bool = False) -> Figures:
    started = time.perf_counter()
    result = report(engine, Scope(playbook=playbook_id), {playbook_id: has_goal})[0]
    since = chart_start(now)
    with engine.connect() as conn:
        figures = Figures(result, now, _steps(conn, playbook_id),
                          _daily(conn, playbook_id, enrollments.c.entered_at, since),
                          _daily(conn, playbook_id, enrollments.c.goal_met_at, since), live=live)
    figures.seconds = time.perf_counter() - started
    return figures


def as_json(figures: Figures) -> dict[str, Any]:
    r = figures.result
    return {
        "playbook": r.playbook, "has_goal": r.has_goal, "entered": r.entered, "states": dict(r.states),
        "exited": dict(r.exited), "emails": dict(r.emails), "skipped": dict(r.skipped), "tasks": dict(r.tasks),
        "met": r.met, "met_at_entry": r.met_at_entry, "median_seconds": r.median_seconds,
        "groups": [asdict(g) for g in r.groups.values()], "comparisons": [asdict(c) for c in r.comparisons],
        "steps": [list(s) for s in figures.steps], "entered_daily": figures.entered_daily,
        "goals_daily": figures.goals_daily,
    }


def _comparison(data: dict[str, Any]) -> Comparison:
    ci95 = data.get("ci95")
    return Comparison(**{**data, "ci95": None if ci95 is None else (float(ci95[0]), float(ci95[1]))})


def from_json(data: dict[str, Any], computed_at: datetime, seconds: float) -> Figures:
    counters = {k: Counter({str(n): int(v) for n, v in data[k].items()})
                for k in ("states", "exited", "emails", "skipped", "tasks")}
    groups = [Group(**g) for g in data["groups"]]
    result = PlaybookResult(data["playbook"], data["has_goal"], data["entered"], met=data["met"],
                            met_at_entry=data["met_at_entry"], median_seconds=data["median_seconds"],
                            groups={g.name: g for g in groups},
                            comparisons=[_comparison(c) for c in data["comparisons"]], **counters)
    steps = [(int(s), str(state), int(n)) for s, state, n in data["steps"]]
    return Figures(result, computed_at, steps, dict(data["entered_daily"]), dict(data["goals_daily"]), seconds)
