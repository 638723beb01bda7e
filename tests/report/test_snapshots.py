"""Report snapshots on SQLite and PostgreSQL: what is stored reads back as the live report of that
moment (groups, comparisons, funnel, charts), a small playbook is counted live, a large one is read
from its snapshot, and a snapshot of another format is not read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine

from playbookd.report import snapshots
from playbookd.report.figures import as_json, compute
from playbookd.report.results import Scope, report
from playbookd.store.database import transaction
from playbookd.store.schema import clicks, enrollments, outbox, report_snapshots, suppressions, tasks

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
T0 = NOW - timedelta(days=10)
GROUPS = ("control", "nudge:a", "nudge:b")


def enrollment(number: int) -> dict[str, Any]:
    at_entry = number % 17 == 0  # met before entering: never counted as met afterwards
    met = not at_entry and (number % 3 == 0 or (number % 5 == 0 and number % 3 == 1))
    return {"id": number, "playbook_id": "p", "account_id": f"A{number}",
            "state": ("active", "exited", "completed", "failed")[number % 4], "step": number % 3,
            "entered_at": T0 + timedelta(hours=number), "reason": "goal met" if number % 4 == 1 else None,
            "group_name": GROUPS[number % 3], "goal_at_entry": at_entry,
            "goal_met_at": T0 + timedelta(hours=number, days=2) if met else None}


def email(number: int) -> dict[str, Any]:
    state = "sent" if number % 7 else "skipped"
    return {"key": f"k{number}", "message_id": f"m{number}@x", "enrollment_id": number, "playbook_id": "p",
            "account_id": f"A{number}", "to_addr": f"a{number % 40}@example.com", "template": "t",
            "subject": "s", "html": "h", "text": "t", "headers": {}, "state": state, "not_before": T0,
            "created_at": T0, "sent_at": T0 if state == "sent" else None,
            "last_error": None if state == "sent" else "bounced", "category": "tips"}


def populate(engine: Engine, count: int = 120) -> None:
    with engine.begin() as conn:
        conn.execute(insert(enrollments), [enrollment(n) for n in range(1, count + 1)])
        conn.execute(insert(outbox), [email(n) for n in range(1, count + 1) if GROUPS[n % 3] != "control"])
        later = T0 + timedelta(days=1)
        conn.execute(insert(suppressions), [
            {"email": "a3@example.com", "category": "tips", "reason": "unsubscribed", "created_at": later},
            {"email": "a4@example.com", "category": "*", "reason": "complaint", "created_at": later}])
        conn.execute(insert(clicks), [{"message_key": "k4", "link": 0, "url": "https://x.example/", "kind": "clicked",
                                       "reason": "click", "enrollment_id": 4, "playbook_id": "p", "account_id": "A4",
                                       "contact": "a4@example.com", "at": T0}])
        conn.execute(insert(tasks), [{"key": "5:1", "account_id": "A5", "playbook_id": "p", "enrollment_id": 5,
                                      "title": "call", "state": "open", "created_at": T0}])


def test_a_snapshot_reads_back_as_the_live_report_of_its_moment(engine: Engine) -> None:
    populate(engine)
    stored = snapshots.refresh(engine, "p", True, NOW)
    with engine.connect() as conn:
        loaded = snapshots.load(conn, "p")
    live = report(engine, Scope(playbook="p"), {"p": True})[0]
    assert loaded is not None and not loaded.live
    assert loaded.result == live == stored.result
    assert [c.ci95 is not None for c in live.comparisons] == [True, True, True]  # compared, intervals and all
    assert live.groups["nudge:a"].clicked == 1 and live.groups["nudge:a"].unsubscribed == 1
    assert as_json(loaded) == as_json(compute(engine, "p", True, NOW))  # funnel and charts too
    assert loaded.computed_at == NOW and sum(loaded.entered_daily.values()) == live.entered
    assert sum(n for _, _, n in loaded.steps) == 120


def test_the_snapshot_stays_as_it_was_until_the_next_refresh(engine: Engine) -> None:
    populate(engine)
    snapshots.refresh(engine, "p", True, NOW)
    with engine.begin() as conn:
        conn.execute(update(enrollments).where(enrollments.c.id <= 10).values(state="exited", reason="by hand"))
    with engine.connect() as conn:
        kept = snapshots.load(conn, "p")
    assert kept is not None and "by hand" not in kept.result.exited
    snapshots.refresh(engine, "p", True, NOW + timedelta(minutes=5))
    with engine.connect() as conn:
        fresh = snapshots.load(conn, "p")
    assert fresh is not None and fresh.result.exited["by hand"] == 10
    assert fresh.computed_at == NOW + timedelta(minutes=5)


def test_a_small_playbook_is_counted_live_and_a_large_one_read_from_its_snapshot(engine: Engine) -> None:
    populate(engine)
    assert snapshots.figures_for(engine, "p", True, 0, NOW) is None  # large, not computed yet
    small = snapshots.figures_for(engine, "p", True, 121, NOW)
    assert small is not None and small.live and small.result.entered == 120
    snapshots.refresh(engine, "p", True, NOW)
    with engine.begin() as conn:
        conn.execute(update(enrollments).where(enrollments.c.id == 1).values(state="completed"))
    large = snapshots.figures_for(engine, "p", True, 120, NOW + timedelta(hours=1))
    assert large is not None and not large.live and large.computed_at == NOW
    assert large.result.states != snapshots.figures_for(engine, "p", True, 121, NOW).result.states  # type: ignore[union-attr]


def test_at_least_counts_no_further_than_asked(engine: Engine) -> None:
    populate(engine, 30)
    with engine.connect() as conn:
        assert [snapshots.at_least(conn, "p", n) for n in (0, 1, 30, 31)] == [True, True, True, False]
        assert not snapshots.at_least(conn, "nobody", 1)


def test_a_snapshot_of_another_format_is_not_read_and_a_removed_playbook_is_pruned(engine: Engine) -> None:
    populate(engine, 30)
    snapshots.refresh(engine, "p", True, NOW)
    snapshots.refresh(engine, "gone", True, NOW)
    with transaction(engine) as conn:
        conn.execute(update(report_snapshots).where(report_snapshots.c.playbook_id == "p").values(format=0))
    with engine.connect() as conn:
        assert snapshots.load(conn, "p") is None and set(snapshots.load_all(conn)) == {"gone"}
    assert snapshots.prune(engine, ["p"]) == 1
    with engine.connect() as conn:
        assert snapshots.load(conn, "gone") is None
