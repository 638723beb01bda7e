"""Report snapshots: each playbook's figures, computed by the daemon's leader on a schedule and stored
in `report_snapshots`, so that a console view reads one row instead of counting every enrollment
(about 10 µs each: seconds for a playbook with a million).

A playbook with fewer than `report.live_under` enrollments is counted live at every view instead:
its figures are then never stale, and cost little.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, literal, select
from sqlalchemy.engine import Engine

from playbookd.report.figures import FORMAT, Figures, as_json, compute, from_json
from playbookd.store import state
from playbookd.store.database import aware, transaction, upsert, utcnow
from playbookd.store.schema import enrollments, report_snapshots

FAILED = "report_refresh_failures"  # state: playbook -> {"at", "error"} of its latest refresh, if that failed
_COLUMNS = (report_snapshots.c.playbook_id, report_snapshots.c.computed_at, report_snapshots.c.seconds,
            report_snapshots.c.figures)


def store(conn: Connection, figures: Figures) -> None:
    upsert(conn, report_snapshots, ["playbook_id"], [{
        "playbook_id": figures.playbook, "computed_at": figures.computed_at, "seconds": figures.seconds,
        "enrollments": figures.result.entered, "format": FORMAT, "figures": as_json(figures)}])


def refresh(engine: Engine, playbook_id: str, has_goal: bool, now: datetime | None = None) -> Figures:
    """Count the playbook's figures, then store them in a transaction of their own: the counting reads
    for seconds on a large base, the write holds the store's write lock for one row only."""
    figures = compute(engine, playbook_id, has_goal, now or utcnow())
    with transaction(engine) as conn:
        store(conn, figures)
    return figures


def prune(engine: Engine, keep: Collection[str]) -> int:
    """Forget the snapshots of playbooks no longer configured."""
    with transaction(engine) as conn:
        query = delete(report_snapshots)
        if keep:
            query = query.where(report_snapshots.c.playbook_id.not_in(sorted(keep)))
        return int(conn.execute(query).rowcount or 0)


def note_failures(engine: Engine, refreshed: Collection[str], failed: Mapping[str, str],
                  configured: Collection[str], now: datetime) -> None:
    """Keep, per playbook, why its latest refresh failed (until one succeeds): what `status` shows, so
    figures left stale by a corrupt row are named beside the log line and the metric."""
    with transaction(engine) as conn:
        before = state.read(conn, FAILED) or {}
        kept = {p: v for p, v in before.items() if p in configured and p not in refreshed and p not in failed}
        kept.update({p: {"at": now.isoformat(), "error": why} for p, why in failed.items()})
        if kept != before:
            state.write(conn, FAILED, kept)


def failures(engine: Engine) -> dict[str, dict[str, str]]:
    return dict(state.get(engine, FAILED) or {})


def _figures(row: Row[Any, Any, Any, Any]) -> Figures:
    _, computed_at, seconds, data = row
    when = aware(computed_at)
    assert when is not None
    return from_json(data, when, float(seconds))


def load(conn: Connection, playbook_id: str) -> Figures | None:
    """The playbook's snapshot, or None when there is none (or only one in another version's format)."""
    row = conn.execute(select(*_COLUMNS).where(report_snapshots.c.playbook_id == playbook_id,
                                               report_snapshots.c.format == FORMAT)).first()
    return None if row is None else _figures(row)


def load_all(conn: Connection) -> dict[str, Figures]:
    return {str(row[0]): _figures(row) for row in conn.execute(
        select(*_COLUMNS).where(report_snapshots.c.format == FORMAT))}


def at_least(conn: Connection, playbook_id: str, count: int) -> bool:
    """Whether the playbook has `count` enrollments or more, reading at most that many index entries."""
    if count <= 0:
        return True
    some = select(literal(1)).where(enrollments.c.playbook_id == playbook_id).limit(count).subquery()
    return int(conn.execute(select(func.count()).select_from(some)).scalar_one()) >= count


def figures_for(engine: Engine, playbook_id: str, has_goal: bool, live_under: int,
                now: datetime) -> Figures | None:
    """Live for a playbook under `live_under` enrollments; else its snapshot, None when it has none yet."""
    with engine.connect() as conn:
        large = at_least(conn, playbook_id, live_under)
        if large:
            return load(conn, playbook_id)
    return compute(engine, playbook_id, has_goal, now, live=True)
