"""`wait: {until_task_done: true, at_most: 7d}` as a playbook says it, and what validate refuses."""

from __future__ import annotations

from pathlib import Path

from playbookd.model.conditions import FieldTypes
from playbookd.model.fields import ACCOUNT_FIELDS, DERIVED_FIELDS
from playbookd.model.playbooks import Context, load_playbooks
from playbookd.model.steps import WaitStep

CTX = Context(FieldTypes({**ACCOUNT_FIELDS, **DERIVED_FIELDS}), ("high_touch", "low_touch", "tech_touch"))
HEAD = "id: renewal\ntrigger: {when: {status: active}}\nsteps:\n"
TASK = "  - task: {title: Call them, assign: csm}\n"


def load(tmp_path: Path, steps: str) -> tuple[list[object], list[str]]:
    (tmp_path / "renewal.yaml").write_text(HEAD + steps)
    playbooks, problems = load_playbooks(tmp_path, CTX)
    return list(playbooks), [str(p) for p in problems]


def test_a_task_wait_waits_at_most_its_span_for_the_latest_task_step_before_it(tmp_path: Path) -> None:
    steps = TASK + "  - id: second\n    task: {title: Again}\n  - wait: {until_task_done: true, at_most: 7d}\n"
    (playbook,), problems = load(tmp_path, steps + "  - wait: 2d\n")
    assert problems == []
    wait = playbook.steps[2]  # type: ignore[attr-defined]
    assert isinstance(wait, WaitStep) and wait.until_task_done and wait.span == 7 * 86400
    assert playbook.awaited_task(2) == "second"  # type: ignore[attr-defined]
    assert playbook.awaited_task(3) is None  # type: ignore[attr-defined]  # a plain wait waits for nothing


def test_a_task_wait_without_an_earlier_task_step_is_refused_where_it_stands(tmp_path: Path) -> None:
    _, problems = load(tmp_path, "  - wait: {until_task_done: true, at_most: 7d}\n" + TASK)
    assert len(problems) == 1
    assert problems[0].endswith("renewal.yaml:4:29: until_task_done waits for the task of an earlier task step, and "
                                "no task step comes before this wait")


def test_a_task_wait_needs_at_most_true_and_known_keys(tmp_path: Path) -> None:
    _, problems = load(tmp_path, TASK + "  - wait: {until_task_done: true}\n"
                       "  - wait: {until_task_done: yes, at_most: 7d}\n"
                       "  - wait: {until_task_done: true, at_most: 7d, atmost: 3d}\n"
                       "  - wait: {until_task_done: true, at_most: 3m}\n")
    assert any(":5:" in p and "until_task_done needs at_most" in p for p in problems), problems
    assert any(":6:" in p and "a wait is a duration (wait: 3d) or {until_task_done: true" in p for p in problems)
    assert any(":7:" in p and "unknown key 'atmost'; did you mean 'at_most'?" in p for p in problems)
    assert any(":8:" in p and "did you mean 3min or 3mo?" in p for p in problems), problems
