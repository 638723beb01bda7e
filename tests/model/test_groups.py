"""Control groups and group names: a sticky, uniform hash of (playbook, account) against the share."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from playbookd.model.conditions import FieldTypes
from playbookd.model.fields import ACCOUNT_FIELDS, DERIVED_FIELDS
from playbookd.model.playbooks import Context, load_playbooks
from playbookd.model.steps import Playbook, entry_group, in_control, variant_for

IDS = [f"ACC-{i:06d}" for i in range(20_000)]
CTX = Context(FieldTypes({**ACCOUNT_FIELDS, **DERIVED_FIELDS}), ("tech_touch",))
DESIGN_EXAMPLE = """\
id: no-login-7d
trigger:
  when: {last_login_at: {older_than: 7d}}
steps:
  - email: {template: login_nudge, to: admin}
  - wait: 3d
  - email:
      to: admin
      variants:
        short: {template: login_nudge_short, weight: 50}
        long:  {template: login_nudge_long,  weight: 50}
  - wait: 4d
  - task: {title: "{{ account.name }} still inactive", assign: csm, due_in: 2d}
goal:
  when: {last_login_at: {within_last: 7d}}
  within: 14d
"""


def load(tmp_path: Path, a: str) -> tuple[list[Playbook], list]:  # type: ignore[type-arg]
    (tmp_path / "a.yaml").write_text(a)
    return load_playbooks(tmp_path, CTX)


def reference_point(playbook: str, account: str) -> float:
    """The documented rule, written out again: sha256("control", playbook, account), first 8 bytes."""
    digest = hashlib.sha256("\x1f".join(("control", playbook, account)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_control_is_the_documented_hash_compared_with_the_share() -> None:
    for account in IDS[:2000]:
        assert in_control(0.1, "p", account) == (reference_point("p", account) < 0.1)


def test_the_control_share_is_uniform_and_per_playbook() -> None:
    held = [a for a in IDS if in_control(0.1, "p", a)]
    assert 0.09 < len(held) / len(IDS) < 0.11
    other = {a for a in IDS if in_control(0.1, "q", a)}
    assert 0.05 < len(other & set(held)) / len(held) < 0.15  # another playbook holds back other accounts


def test_raising_the_share_keeps_every_earlier_control() -> None:
    before = {a for a in IDS if in_control(0.1, "p", a)}
    after = {a for a in IDS if in_control(0.2, "p", a)}
    assert before < after and 0.19 < len(after) / len(IDS) < 0.21


def test_parsing_control_and_goal_exit(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE.replace("goal:\n", "control: 12.5%\ngoal:\n  exit: false\n")
    (pb,), problems = load(tmp_path, a=text)
    assert problems == [] and pb.control == 0.125
    assert pb.goal is not None and pb.goal.exit is False and pb.goal.where is not None
    (default,), _ = load(tmp_path, a=DESIGN_EXAMPLE)
    assert default.control == 0 and default.goal is not None and default.goal.exit is True


@pytest.mark.parametrize("value", ["10", "0.1", "100%", "-5%", "ten%", "true"])
def test_a_control_that_is_not_a_percentage_is_refused_where_it_stands(tmp_path: Path, value: str) -> None:
    _, problems = load(tmp_path, a=DESIGN_EXAMPLE.replace("goal:\n", f"control: {value}\ngoal:\n"))
    (problem,) = problems
    assert (problem.line, problem.col) == (14, 10) and "'control' is a percentage of entrants" in problem.message


def test_group_names(tmp_path: Path) -> None:
    (pb,), _ = load(tmp_path, a=DESIGN_EXAMPLE.replace("goal:\n", "control: 30%\ngoal:\n"))
    groups = {entry_group(pb, a) for a in IDS[:500]}
    assert groups == {"control", "short", "long"}
    no_variants = DESIGN_EXAMPLE.replace("""      variants:
        short: {template: login_nudge_short, weight: 50}
        long:  {template: login_nudge_long,  weight: 50}
""", "      template: login_nudge_short\n")
    (pb,), _ = load(tmp_path, a=no_variants)
    assert {entry_group(pb, a) for a in IDS[:50]} == {"treatment"}
    two = DESIGN_EXAMPLE.replace("  - wait: 4d\n", """  - id: offer
    email:
      to: admin
      variants: {a: {template: x}, b: {template: y}}
  - wait: 4d
""")
    (pb,), problems = load(tmp_path, a=two)
    assert problems == []
    names = {entry_group(pb, acc) for acc in IDS[:500]}
    first = pb.step_keys[2]
    assert {n.split(", ")[0] for n in names} == {f"{first}:short", f"{first}:long"}
    assert {n.split(", ")[1] for n in names} == {"offer:a", "offer:b"}


def test_the_recorded_group_decides_the_variant(tmp_path: Path) -> None:
    (pb,), _ = load(tmp_path, a=DESIGN_EXAMPLE)
    step = pb.steps[2]
    assert variant_for(pb, 2, step, "long", "ACC-1").name == "long"
    assert variant_for(pb, 2, step, "short", "ACC-1").name == "short"
    # a group from before variants were renamed: the sticky pick, as for enrollments without a group
    assert variant_for(pb, 2, step, "medium", "ACC-1") == variant_for(pb, 2, step, None, "ACC-1")
