"""A playbook as the engine runs it: typed, immutable steps, its trigger, exit and goal."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from playbookd.config.durations import Span
from playbookd.errors import Where
from playbookd.model.conditions import Condition
from playbookd.model.launch import Launch

_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9._#-]{1,64}")  # fits any key and header as it is


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
    when: Condition | None = None  # over account fields and enrollment facts; false: skipped
    only: Condition | None = None  # `to: {role: admin, where: CONDITION}`: the contacts it holds for
    sender: str | None = None  # `from:` csm or an address; else the template's, else delivery.from


@dataclass(frozen=True)
class WaitStep:
    span: Span  # with until_task_done: the longest it waits (`at_most`)
    where: Where
    when: Condition | None = None  # over account fields and enrollment facts; false: skipped
    until_task_done: bool = False  # ends early once the task of the latest task step before it is closed


@dataclass(frozen=True)
class TaskStep:
    title: str
    assign: str  # "csm" or an email address
    due_in: Span | None
    where: Where
    when: Condition | None = None  # over account fields and enrollment facts; false: skipped


@dataclass(frozen=True)
class WebhookStep:
    url: str
    body: Any
    where: Where
    when: Condition | None = None  # over account fields and enrollment facts; false: skipped


@dataclass(frozen=True)
class SetStep:
    values: Mapping[str, Any]
    where: Where
    when: Condition | None = None  # over account fields and enrollment facts; false: skipped


ENROLLMENT_FACTS: dict[str, str | None] = {
    "enrollment.clicked": "boolean", "enrollment.emails_sent": "integer", "enrollment.days_in": "integer",
    "enrollment.group": "string"}

Step = EmailStep | WaitStep | TaskStep | WebhookStep | SetStep
STEP_KINDS = {"email": EmailStep, "wait": WaitStep, "task": TaskStep, "webhook": WebhookStep,
              "set": SetStep}


@dataclass(frozen=True)
class Schedule:
    """`trigger: {schedule: CRON, when: ...}`: every matching account enters at each occurrence."""

    cron: str
    catch_up: timedelta  # an occurrence missed while down still runs this long after it


@dataclass(frozen=True)
class Goal:
    when: Condition
    within: Span | None
    exit: bool = True  # a met goal ends the enrollment (never one already met at entry)
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Playbook:
    id: str
    name: str
    file: str
    status: str  # as the file says; see model.launch (the database may pause or resume it)
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
    step_keys: tuple[str, ...] = ()  # each step's stable identity, in order
    control: float = 0.0  # the share of entrants held back, 0 <= control < 1
    launch: Launch = field(default_factory=Launch)
    schedule: Schedule | None = None

    def position(self, step: int, key: str | None) -> tuple[int, str | None]:
        """Where an enrollment that was to run step `step` (known as `key`) stands in this version of
        the playbook, and a note when the step moved or is gone."""
        if key is None:
            return step, None
        if key in self.step_keys:
            found = self.step_keys.index(key)
            return found, None if found == step else f"step {key} moved from {step + 1} to {found + 1}"
        return step, f"step {key} no longer exists; going on with step {step + 1}"

    def key_at(self, step: int) -> str | None:
        return self.step_keys[step] if step < len(self.step_keys) else None

    def step_token(self, step: int) -> str:
        """The step's identity as it goes into the keys that make a step run once per enrollment (the
        outbox's, a webhook's Idempotency-Key): its key when that is short and plain, else a digest.
        By identity, not position: after an edit moves steps, a step already run is not run again and
        a new step at a used position is not taken for the old one."""
        key = self.key_at(step)
        if key is None:
            return f"#{step}"
        return key if _PLAIN_TOKEN.fullmatch(key) else "h-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    def awaited_task(self, index: int) -> str | None:
        """The step key of the task that the wait at `index` waits for: the latest task step before it;
        None when that step is no `until_task_done` wait."""
        step = self.steps[index] if 0 <= index < len(self.steps) else None
        if not isinstance(step, WaitStep) or not step.until_task_done:
            return None
        earlier = [i for i in range(index) if isinstance(self.steps[i], TaskStep)]
        return self.key_at(earlier[-1]) if earlier else None

    def variant_steps(self) -> list[tuple[int, EmailStep]]:
        return [(i, s) for i, s in enumerate(self.steps) if isinstance(s, EmailStep) and len(s.variants) > 1]

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


CONTROL, TREATMENT = "control", "treatment"
_GROUP_SEPARATOR = ", "


def in_control(share: float, playbook_id: str, account_id: str) -> bool:
    """A uniform point in [0, 1) from a hash of (playbook, account), compared with the share: the same
    account is always on the same side, and raising the share keeps every earlier control one."""
    digest = hashlib.sha256(f"control\x1f{playbook_id}\x1f{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def entry_group(playbook: Playbook, account_id: str) -> str:
    """The group an account enters in: `control`, its variant (`short`), `<step id>:<variant>` for each
    step when several steps have variants, or `treatment` when none has."""
    if playbook.control and in_control(playbook.control, playbook.id, account_id):
        return CONTROL
    steps = playbook.variant_steps()
    if not steps:
        return TREATMENT
    if len(steps) == 1:
        return pick_variant(steps[0][1].variants, playbook.id, account_id).name
    return _GROUP_SEPARATOR.join(f"{playbook.step_keys[i]}:{pick_variant(s.variants, playbook.id, account_id).name}"
                                 for i, s in steps)


def group_parts(group: str) -> list[str]:
    """The groups an enrollment counts in: one per step with variants."""
    return group.split(_GROUP_SEPARATOR)


def variant_for(playbook: Playbook, index: int, step: EmailStep, group: str | None, account_id: str) -> Variant:
    """The variant the enrollment's group names for this step; else (a variant added or renamed since
    it entered, or an enrollment from before groups) the sticky pick."""
    if group and len(step.variants) > 1:
        parts = set(group_parts(group))
        key = playbook.key_at(index)
        for variant in step.variants:
            if variant.name in parts or f"{key}:{variant.name}" in parts:
                return variant
    return pick_variant(step.variants, playbook.id, account_id)
