"""A step's `when:` over account fields and enrollment facts, through full cycles on SQLite and
PostgreSQL: a false one is skipped with its reason in history and the next step runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from playbookd.store.schema import audit, tasks

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
GUARDED = """\
id: guarded
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 2d
  - id: after-one-email
    task: {title: "one email, two days in", assign: csm}
    when:
      all:
        - enrollment.emails_sent: 1
        - enrollment.days_in: {gte: 2}
        - enrollment.group: treatment
        - enrollment.clicked: false
  - id: too-early
    task: {title: "five days in", assign: csm}
    when: {enrollment.days_in: {gte: 5}}
  - id: basic-plan
    task: {title: "on basic", assign: csm}
    when: {plan: basic}
"""


def test_steps_run_or_are_skipped_by_their_when(make: Any, db_url: str) -> None:
    project = make({"guarded": GUARDED}, database=db_url)
    project.run(T0)
    assert project.rows(tasks) == []
    project.run(T0 + timedelta(days=2, hours=1))
    assert sorted(r.title for r in project.rows(tasks)) == ["on basic", "one email, two days in"]
    skipped = [(r.step, r.reason) for r in project.rows(audit, audit.c.event == "step_skipped")]
    assert skipped == [(3, "when_false")]
