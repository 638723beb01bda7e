"""Changes are consumed by evaluation, not by sync, on a fixed clock through full cycles on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from playbookd.errors import ValidationError
from playbookd.service import cycle
from playbookd.store.schema import enrollments

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email,nps\n"
ROW = "ACC-1,Harbor Foods,5000,active,basic,adopted,maria@acme.example,{nps}\n"
DETRACTOR = """\
id: detractor
trigger: {when: {all: [{nps: {changed: true}}, {nps: {lte: 6}}]}}
reenter_after: 1d
steps:
  - task: {title: "{{ account.name }} gave us {{ account.nps }}", assign: csm}
"""
FROM_NINE = "id: from-nine\ntrigger: {when: {nps: {changed_from: 9}}}\nsteps:\n  - task: {title: t, assign: csm}\n"


def project_with(make: Any, db_url: str, playbooks: dict[str, str]) -> Any:
    project = make(playbooks, accounts_csv=HEADER + ROW.format(nps=9), database=db_url)
    project.run(T0)  # the account's first sync: not a change
    assert project.rows(enrollments) == []
    return project


def sync_by_hand(project: Any, nps: int, at: datetime) -> None:
    project.set_accounts(HEADER + ROW.format(nps=nps))
    cycle.run_sync(project.runtime, project.engine, now=at)


def test_a_change_seen_by_a_manual_sync_triggers_exactly_once(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"detractor": DETRACTOR})
    sync_by_hand(project, 3, T0 + timedelta(hours=1))  # `playbookd sync`, then `playbookd run --once`
    project.run(T0 + timedelta(hours=2))
    assert [r.playbook_id for r in project.rows(enrollments)] == ["detractor"]
    project.run(T0 + timedelta(days=2))  # re-entry is allowed by now, but nothing changed again
    assert len(project.rows(enrollments)) == 1


def test_several_syncs_between_evaluations_collapse_into_one_change(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"from-nine": FROM_NINE})
    sync_by_hand(project, 5, T0 + timedelta(hours=1))
    sync_by_hand(project, 3, T0 + timedelta(hours=2))
    project.run(T0 + timedelta(hours=3))  # 9 -> 5 -> 3 is one change from 9
    assert [r.playbook_id for r in project.rows(enrollments)] == ["from-nine"]


def test_a_change_undone_before_any_evaluation_is_no_change(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"detractor": DETRACTOR, "from-nine": FROM_NINE})
    sync_by_hand(project, 3, T0 + timedelta(hours=1))
    sync_by_hand(project, 9, T0 + timedelta(hours=2))
    project.run(T0 + timedelta(hours=3))
    assert project.rows(enrollments) == []


PROMOTER_LOST = """\
id: promoter-lost
trigger: {when: {nps: {changed_from: {gte: 9}, changed_to: {between: [0, 6]}}}}
steps:
  - task: {title: t, assign: csm}
"""


def test_changed_from_and_changed_to_take_operators(make: Any, db_url: str) -> None:
    project = project_with(make, db_url, {"promoter-lost": PROMOTER_LOST})
    sync_by_hand(project, 7, T0 + timedelta(hours=1))  # 9 -> 7: from a promoter, but not to a detractor
    project.run(T0 + timedelta(hours=2))
    assert project.rows(enrollments) == []
    project.set_accounts(HEADER + ROW.format(nps=9))
    project.run(T0 + timedelta(hours=3))
    sync_by_hand(project, 4, T0 + timedelta(hours=4))
    project.run(T0 + timedelta(hours=5))
    assert [r.playbook_id for r in project.rows(enrollments)] == ["promoter-lost"]


def test_a_changed_from_with_a_bad_operator_is_a_located_problem(make: Any, db_url: str) -> None:
    bad = PROMOTER_LOST.replace("{gte: 9}", "{older_than: 9}")
    with pytest.raises(ValidationError, match=r"promoter-lost.yaml:2:\d+: nps changed_from: takes a value or one"):
        make({"promoter-lost": bad}, accounts_csv=HEADER + ROW.format(nps=9), database=db_url)
