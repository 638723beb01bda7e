"""Which groups are compared: each treated group with control, and the variants of one step together."""

from __future__ import annotations

from playbookd.report.results import Group, comparisons
from playbookd.report.stats import NOT_ENOUGH


def test_variants_are_compared_with_control_and_within_their_step() -> None:
    groups = [Group("control", None, entered=50, goal_met=5), Group("nudge:a", 0, entered=60, goal_met=9),
              Group("nudge:b", 0, entered=60, goal_met=12), Group("offer:x", 1, entered=60, goal_met=20),
              Group("offer:y", 1, entered=60, goal_met=6), Group("ungrouped", None, entered=90, goal_met=1)]
    pairs = [(c.group, c.versus) for c in comparisons(groups)]
    assert pairs == [("nudge:a", "control"), ("nudge:b", "control"), ("offer:x", "control"), ("offer:y", "control"),
                     ("nudge:a", "nudge:b"), ("offer:x", "offer:y")]


def test_without_control_only_the_variants_are_compared_and_small_groups_are_not() -> None:
    found = comparisons([Group("short", 0, entered=40, met_at_entry=11, goal_met=3), Group("long", 0, entered=45)])
    assert [(c.group, c.versus, c.note) for c in found] == [("long", "short", NOT_ENOUGH)]
    assert comparisons([Group("treatment", None, entered=500)]) == []
