"""A playbook as the engine runs it: typed, immutable steps, its trigger, exit and goal."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from playbookd.config.durations import Span
from playbookd.errors import Where
from playbookd.model.conditions import Condition


@dataclass(frozen=True)
class Variant:
    name: str
    template: str
    weight: int


@dataclass(frozen=True)
class EmailStep:
    to: tuple[str, ...]
    variants: tuple[Variant, ...]  # one unnamed variant when `template:` is used
    where: Where


@dataclass(frozen=True)
class WaitStep:
    span: Span
    where: Where


@dataclass(frozen=True)
class TaskStep:
    title: str
    assign: str  # "csm" or an email address
    due_in: Span | None
    where: Where


@dataclass(frozen=True)
class WebhookStep:
    url: str
    body: Any
    where: Where


@dataclass(frozen=True)
class SetStep:
    values: Mapping[str, Any]
    where: Where


Step = EmailStep | WaitStep | TaskStep | WebhookStep | SetStep
STEP_KINDS = {"email": EmailStep, "wait": WaitStep, "task": TaskStep, "webhook": WebhookStep,
              "set": SetStep}


@dataclass(frozen=True)
class Goal:
    when: Condition
    within: Span | None


@dataclass(frozen=True)
class Playbook:
    id: str
    name: str
    file: str
    enabled: bool
    category: str
    priority: int
    segments: tuple[str, ...] | None
    event: str | None
    trigger: Condition
    reenter_after: Span | None
    exit_when: Condition | None
    steps: tuple[Step, ...]
    goal: Goal | None
    where: Where = field(compare=False)

    def templates(self) -> Iterable[tuple[str, Where]]:
        for step in self.steps:
            if isinstance(step, EmailStep):
                for variant in step.variants:
                    yield variant.template, step.where


def step_kind(step: Step) -> str:
    return next(kind for kind, cls in STEP_KINDS.items() if isinstance(step, cls))


def pick_variant(variants: Sequence[Variant], playbook_id: str, account_id: str) -> Variant:
    """Weighted choice that is stable for an account: the same account always sees the same variant."""
    if len(variants) == 1:
        return variants[0]
    digest = hashlib.sha256(f"{playbook_id}\x1f{account_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in variants)
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]
