"""The report's counts on hand-inserted rows, on SQLite and PostgreSQL: states, exit and skip reasons
(read apart from the counts, which come from covering indexes), emails by state, per group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from playbookd.report.results import OPERATOR, Scope, report
from playbookd.store.schema import audit, enrollments, outbox

T0 = datetime(2026, 3, 2, 15, tzinfo=UTC)


def enrollment(number: int, playbook: str, state: str, group: str, reason: str | None = None,
               met: bool = False) -> dict[str, Any]:
    return {"id": number, "playbook_id": playbook, "account_id": f"A{number}", "state": state, "step": 1,
            "entered_at": T0, "reason": reason, "group_name": group, "goal_at_entry": False,
            "goal_met_at": T0 + timedelta(days=2) if met else None}


def email(number: int, enrollment_id: int, state: str, error: str | None = None) -> dict[str, Any]:
    return {"key": f"k{number}", "message_id": f"m{number}@x", "enrollment_id": enrollment_id, "playbook_id": "p",
            "account_id": f"A{enrollment_id}", "to_addr": f"a{enrollment_id}@example.com", "template": "t",
            "subject": "s", "html": "h", "text": "t", "headers": {}, "state": state, "not_before": T0,
            "created_at": T0, "sent_at": T0 if state == "sent" else None, "last_error": error}


def test_counts_and_reasons_per_playbook_and_group(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(enrollments), [
            enrollment(1, "p", "exited", "control", "goal met", met=True),
            enrollment(2, "p", "exited", "a", f"{OPERATOR}: ana"),
            enrollment(3, "p", "active", "a"),
            enrollment(4, "p", "exited", "a", "goal met", met=True),
            enrollment(5, "other", "exited", "control", "unsubscribed"),
        ])
        conn.execute(insert(outbox), [email(1, 2, "sent"), email(2, 3, "sent"), email(3, 4, "skipped", "bounced"),
                                      email(4, 1, "skipped", None), email(5, 5, "skipped", "bounced")])
        conn.execute(insert(audit), [
            {"at": T0, "account_id": "A3", "playbook_id": "p", "enrollment_id": 3, "contact": "b@example.com",
             "event": "step_skipped", "reason": "unsubscribed"},
            {"at": T0, "account_id": "A3", "playbook_id": "p", "enrollment_id": 3, "contact": None,
             "event": "step_skipped", "reason": "not counted: no contact"},
            {"at": T0, "account_id": "A5", "playbook_id": "other", "enrollment_id": 5, "contact": "c@example.com",
             "event": "step_skipped", "reason": "unsubscribed"},
        ])
    (found,) = report(engine, Scope(playbook="p"))
    assert (found.entered, found.met, dict(found.states)) == (4, 2, {"exited": 3, "active": 1})
    assert dict(found.exited) == {"goal met": 2, OPERATOR: 1}
    assert dict(found.emails) == {"sent": 2, "skipped": 3}
    assert dict(found.skipped) == {"bounced": 1, "unknown": 1, "unsubscribed": 1}
    groups = {g.name: (g.entered, g.goal_met, g.emails_sent, g.recipients, g.emailed) for g in found.groups.values()}
    assert groups == {"control": (1, 1, 0, 0, 0), "a": (3, 1, 2, 2, 2)}
    everything = {r.playbook: r for r in report(engine, Scope())}
    assert dict(everything["other"].skipped) == {"bounced": 1, "unsubscribed": 1}
    assert dict(everything["p"].skipped) == dict(found.skipped)
