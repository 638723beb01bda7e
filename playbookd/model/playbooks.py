"""Playbooks: one YAML file each, parsed and checked into typed, immutable objects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from playbookd.config.durations import Span, as_span, parse_span
from playbookd.config.reserved import reserved_field
from playbookd.config.yaml_loader import Key, Located, load_yaml_file
from playbookd.errors import Problem, Where, did_you_mean
from playbookd.model.conditions import TRUE, Condition, FieldTypes, parse_condition
from playbookd.model.fields import CONTACT_FIELDS
from playbookd.model.launch import Launch, read_launch, read_status
from playbookd.model.schedules import read_schedule
from playbookd.model.senders import sender_problem
from playbookd.model.steps import (
    ENROLLMENT_FACTS,
    STEP_KINDS,
    EmailStep,
    Goal,
    Playbook,
    Schedule,
    SetStep,
    Step,
    TaskStep,
    Variant,
    WaitStep,
    WebhookStep,
)

TOP_KEYS = ("id", "name", "description", "enabled", "category", "priority", "audience",
            "trigger", "reenter_after", "exit_when", "steps", "goal", "control", "status", "launch")
SPECIAL_RECIPIENTS = ("all", "primary")
KNOWN_ROLES = frozenset({"admin", "champion", "user", "billing", "owner", "executive"})
CATEGORIES_HINT = "e.g. product_tips, renewals, surveys, onboarding, operational"


@dataclass
class Context:
    """What a playbook is checked against: known fields, segments, roles."""

    fields: FieldTypes
    segments: tuple[str, ...]
    roles: frozenset[str] = KNOWN_ROLES
    tz: tzinfo = UTC  # what a schedule's times are in


class _Reader:
    def __init__(self, doc: Located, ctx: Context) -> None:
        self.doc, self.ctx = doc, ctx
        self.problems: list[Problem] = []

    def fail(self, path: Key, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def where(self, path: Key) -> Where:
        line, col = self.doc.where(path)
        return Where(self.doc.file, line, col)

    def condition(self, path: Key, event_fields: bool = False, enrollment: bool = False) -> Condition:
        known = self.ctx.fields.with_events(event_fields)
        if enrollment:  # a step's `when:`: enrollment facts, and no contacts (steps load none to test)
            known = FieldTypes({**known.types, **ENROLLMENT_FACTS}, allow_events=event_fields)
        cond, problems = parse_condition(self.doc, path, known)
        self.problems += problems
        return cond

    def duration(self, value: Any, path: Key) -> Span | None:
        try:
            return as_span(parse_span(value))
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def text(self, data: Mapping[str, Any], key: str, path: Key, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail((*path, key), f"'{key}' must be non-empty text")
            return default or ""
        return value


def _unknown_keys(reader: _Reader, data: Mapping[str, Any], allowed: Iterable[str], path: Key) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, f"; allowed: {', '.join(allowed)}")
            reader.fail((*path, key), f"unknown key {key!r}{hint}")


RECIPIENT_FORM = ("'to' is all, primary, a role, a list of roles, or {role: ROLE, where: CONDITION} "
                  "to keep only the contacts the condition holds for")


def _filtered_recipients(reader: _Reader, value: dict[Any, Any], path: Key) -> tuple[tuple[str, ...],
                                                                                       Condition | None]:
    _unknown_keys(reader, value, ("role", "where"), path)
    roles = _recipients(reader, value.get("role", "all"), (*path, "role"))
    if "where" not in value:
        return roles, None
    contacts = reader.ctx.fields.contacts or FieldTypes(dict(CONTACT_FIELDS), changes=False)
    cond, problems = parse_condition(reader.doc, (*path, "where"), contacts)
    reader.problems += problems
    return roles, cond


def _recipients(reader: _Reader, value: Any, path: Key) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        reader.fail(path, RECIPIENT_FORM)
        return ()
    for item in items:
        if item not in SPECIAL_RECIPIENTS and item not in reader.ctx.roles:
            roles = sorted(reader.ctx.roles)
            hint = did_you_mean(item, [*SPECIAL_RECIPIENTS, *roles])
            reader.fail(path, f"unknown recipient role {item!r}{hint} (known: all, primary, "
                        f"{', '.join(roles)})")
    return tuple(items)


def _variants(reader: _Reader, spec: Mapping[str, Any], path: Key) -> tuple[Variant, ...]:
    if "template" in spec and "variants" in spec:
        reader.fail(path, "an email step has either 'template' or 'variants', not both")
    if "variants" not in spec:
        return (Variant("", reader.text(spec, "template", path), 1),)
    raw = spec["variants"]
    if not isinstance(raw, dict) or not raw:
        reader.fail((*path, "variants"), "'variants' maps a variant name to {template, weight}")
        return ()
    return tuple(_variant(reader, str(k), v, (*path, "variants", k)) for k, v in raw.items())


def _variant(reader: _Reader, name: str, spec: Any, path: Key) -> Variant:
    if not isinstance(spec, dict):
        reader.fail(path, "a variant is {template: NAME, weight: N}")
        return Variant(name, "", 0)
    _unknown_keys(reader, spec, ("template", "weight"), path)
    weight = spec.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
        reader.fail((*path, "weight"), "'weight' is a whole number, 0 or more")
        weight = 0
    return Variant(name, reader.text(spec, "template", path), weight)


def _email(reader: _Reader, spec: Any, path: Key) -> EmailStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "email takes {template: NAME, to: ROLE} or {to: ..., variants: {...}}")
        return None
    _unknown_keys(reader, spec, ("template", "to", "variants", "from"), path)
    given = spec.get("to", "primary")
    if isinstance(given, dict):
        to, only = _filtered_recipients(reader, given, (*path, "to"))
    else:
        to, only = _recipients(reader, given, (*path, "to")), None
    variants = _variants(reader, spec, path)
    if variants and sum(v.weight for v in variants) == 0:
        reader.fail((*path, "variants"), "variant weights add up to 0")
    sender = spec.get("from")
    if sender is not None and (why := sender_problem(sender)):
        reader.fail((*path, "from"), why)
        sender = None
    return EmailStep(to, variants, reader.where(path), only, sender.strip() if sender else None)


def _task(reader: _Reader, spec: Any, path: Key) -> TaskStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "task takes {title: TEXT, assign: csm, due_in: 2d}")
        return None
    _unknown_keys(reader, spec, ("title", "assign", "due_in"), path)
    due = spec.get("due_in")
    due_in = None if due is None else reader.duration(due, (*path, "due_in"))
    assign = spec.get("assign", "csm")
    if not isinstance(assign, str) or (assign != "csm" and "@" not in assign):
        reader.fail((*path, "assign"), "'assign' is csm (the account's CSM) or an email address")
    return TaskStep(reader.text(spec, "title", path), str(assign), due_in, reader.where(path))


def _webhook(reader: _Reader, spec: Any, path: Key) -> WebhookStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "webhook takes {url: URL, body: {...}}")
        return None
    _unknown_keys(reader, spec, ("url", "body"), path)
    return WebhookStep(reader.text(spec, "url", path), spec.get("body", {}), reader.where(path))


def _set(reader: _Reader, spec: Any, path: Key) -> SetStep | None:
    if not isinstance(spec, dict) or not spec:
        reader.fail(path, "set takes {field: value, ...}")
        return None
    for key, value in spec.items():
        if why := reserved_field(str(key)):
            reader.fail((*path, key), f"set: {why}; a step cannot write it")
        elif key in ("id", "segment") or isinstance(value, (dict, list)):
            reader.fail((*path, key), f"cannot set {key!r} to {value!r}: one plain value per field")
    return SetStep(dict(spec), reader.where(path))


def _step(reader: _Reader, data: Any, path: Key) -> Step | None:
    step = _step_body(reader, data, path)
    if step is None or not isinstance(data, dict) or data.get("when") is None:
        return step
    return replace(step, when=reader.condition((*path, "when"), enrollment=True))


def _step_body(reader: _Reader, data: Any, path: Key) -> Step | None:
    body = {k: v for k, v in data.items() if k not in ("id", "when")} if isinstance(data, dict) else None
    if body is None or len(body) != 1:
        reader.fail(path, f"a step is one of: {', '.join(STEP_KINDS)} (one key per list item, and an optional "
                    "id and when)")
        return None
    kind, spec = next(iter(body.items()))
    if kind not in STEP_KINDS:
        hint = did_you_mean(str(kind), STEP_KINDS)
        reader.fail((*path, kind), f"unknown step {kind!r}{hint}")
        return None
    if kind == "wait":
        seconds = reader.duration(spec, (*path, kind))
        return None if seconds is None else WaitStep(seconds, reader.where(path))
    return _STEP_READERS[kind](reader, spec, (*path, kind))


_STEP_READERS = {"email": _email, "task": _task, "webhook": _webhook, "set": _set}


def _steps(reader: _Reader, data: Any) -> tuple[tuple[Step, ...], tuple[str, ...]]:
    """The steps and their keys: an explicit `id:`, else one derived from the step's content, so that
    inserting, removing or reordering steps never moves an enrollment in flight to the wrong one."""
    if not isinstance(data, list) or not data:
        reader.fail(("steps",), "'steps' is a non-empty list")
        return (), ()
    found = [(_step(reader, item, ("steps", i)), _step_key(reader, item, ("steps", i))) for i, item in enumerate(data)]
    _duplicate_step_ids(reader, data)
    kept = [(step, key) for step, key in found if step is not None]
    return tuple(step for step, _ in kept), _unique([key for _, key in kept])


def _duplicate_step_ids(reader: _Reader, data: list[Any]) -> None:
    ids = [item["id"] for item in data if isinstance(item, dict) and "id" in item]
    for index, item in enumerate(data):
        if isinstance(item, dict) and "id" in item and ids.count(item["id"]) > 1:
            reader.fail(("steps", index, "id"), f"step id {item['id']!r} is used {ids.count(item['id'])} times")


def _step_key(reader: _Reader, item: Any, path: Key) -> str:
    if isinstance(item, dict) and "id" in item:
        given = item["id"]
        if isinstance(given, str) and given.strip():
            return given.strip()
        reader.fail((*path, "id"), "a step's 'id' is a short name")
    digest = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()[:10]
    kind = next(iter(item), "step") if isinstance(item, dict) else "step"
    return f"{kind}-{digest}"


def _unique(keys: list[str]) -> tuple[str, ...]:
    """Two identical steps (`wait: 3d` twice) are told apart by their order."""
    seen: dict[str, int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return tuple(out)


def _audience(reader: _Reader, data: Any) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        reader.fail(("audience",), "'audience' takes {segments: [...]}")
        return None
    _unknown_keys(reader, data, ("segments",), ("audience",))
    segments = data.get("segments")
    if segments is None:
        return None
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        reader.fail(("audience", "segments"), "'segments' is a list of segment names")
        return None
    for i, name in enumerate(segments):
        if name not in reader.ctx.segments:
            hint = did_you_mean(name, reader.ctx.segments)
            reader.fail(("audience", "segments", i),
                        f"unknown segment {name!r}{hint} (config.yaml defines "
                        f"{', '.join(reader.ctx.segments)})")
    return tuple(segments)


TRIGGER_FORM = "'trigger' takes {when: CONDITION}, {event: NAME, when: ...} or {schedule: CRON, when: ...}"


def _schedule(reader: _Reader, data: Mapping[str, Any]) -> Schedule | None:
    schedule, problems = read_schedule(data, reader.ctx.tz)
    for path, message in problems:
        reader.fail(path, message)
    return schedule


def _trigger(reader: _Reader, data: Any) -> tuple[str | None, Condition, Schedule | None]:
    if not isinstance(data, dict) or not data:
        reader.fail(("trigger",), TRIGGER_FORM)
        return None, TRUE, None
    _unknown_keys(reader, data, ("when", "event", "schedule", "catch_up"), ("trigger",))
    event = data.get("event")
    if event is not None and (not isinstance(event, str) or not event):
        reader.fail(("trigger", "event"), "'event' is an event name")
        event = None
    schedule = _schedule(reader, data)
    if "when" not in data:
        if event is None and "schedule" not in data:
            reader.fail(("trigger",), "a trigger without an event or a schedule needs 'when'")
        return event, TRUE, schedule
    return event, reader.condition(("trigger", "when"), event_fields=event is not None), schedule


def _goal(reader: _Reader, data: Any) -> Goal | None:
    if data is None:
        return None
    if not isinstance(data, dict) or "when" not in data:
        reader.fail(("goal",), "'goal' takes {when: CONDITION, within: DURATION, exit: true|false}")
        return None
    _unknown_keys(reader, data, ("when", "within", "exit"), ("goal",))
    within = data.get("within")
    seconds = None if within is None else reader.duration(within, ("goal", "within"))
    leaves = data.get("exit", True)
    if not isinstance(leaves, bool):
        reader.fail(("goal", "exit"), "'exit' is true (a met goal ends the enrollment) or false")
    return Goal(reader.condition(("goal", "when")), seconds, leaves is not False, reader.where(("goal", "when")))


def _control(reader: _Reader, data: Any) -> float:
    """`control: 10%`: the share of entrants held back as the control group."""
    if data is None:
        return 0.0
    text = data.strip() if isinstance(data, str) else ""
    try:
        share = float(text[:-1]) if text.endswith("%") else -1.0
    except ValueError:
        share = -1.0
    if not 0 <= share < 100:
        reader.fail(("control",), f"'control' is a percentage of entrants to hold back, from 0% to below 100% "
                                  f"(e.g. control: 10%), not {data!r}")
        return 0.0
    return share / 100


def _header(reader: _Reader, data: Mapping[str, Any], stem: str) -> dict[str, Any]:
    pid = data.get("id", stem)
    if not isinstance(pid, str) or not pid.strip():
        reader.fail(("id",), "'id' must be non-empty text")
        pid = stem
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        reader.fail(("priority",), "'priority' is a whole number (higher goes first)")
        priority = 0
    category = data.get("category", "general")
    if not isinstance(category, str) or not category.isidentifier():
        reader.fail(("category",), f"'category' is a short name, {CATEGORIES_HINT}")
        category = "general"
    status, problems = read_status(reader.doc, data)
    reader.problems += problems
    return {"id": pid, "name": str(data.get("name") or pid), "status": status,
            "priority": priority, "category": category}


def parse_playbook(doc: Located, stem: str, ctx: Context) -> tuple[Playbook | None, list[Problem]]:
    """The playbook, even when it has problems (so its templates can still be checked), and the problems."""
    reader = _Reader(doc, ctx)
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.problem((), "a playbook file holds one mapping (id, trigger, steps, ...)")]
    _unknown_keys(reader, data, TOP_KEYS, ())
    head = _header(reader, data, stem)
    event, trigger, schedule = _trigger(reader, data.get("trigger"))
    reenter = data.get("reenter_after")
    if schedule is not None and reenter is not None:
        reader.fail(("reenter_after",), "a scheduled playbook enters its accounts at every occurrence; "
                    "reenter_after does not apply")
    steps, keys = _steps(reader, data.get("steps"))
    playbook = Playbook(
        **head, file=doc.file, segments=_audience(reader, data.get("audience")), event=event,
        trigger=trigger,
        reenter_after=None if reenter is None else reader.duration(reenter, ("reenter_after",)),
        exit_when=reader.condition(("exit_when",)) if data.get("exit_when") is not None else None,
        steps=steps, step_keys=keys, goal=_goal(reader, data.get("goal")),
        control=_control(reader, data.get("control")),
        where=Where(doc.file, 1, 1), launch=_launch(reader, data), schedule=schedule,
    )
    return playbook, reader.problems


def _launch(reader: _Reader, data: Mapping[str, Any]) -> Launch:
    launch, problems = read_launch(reader.doc, data)
    reader.problems += problems
    return launch


def playbook_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def set_step_fields(directory: Path) -> set[str]:
    """The fields the playbooks' `set` steps write, read before the playbooks are checked: so a playbook
    may test a field that only another playbook creates. Files that do not parse add nothing here."""
    names: set[str] = set()
    for path in playbook_files(directory) if directory.is_dir() else []:
        doc, _ = load_yaml_file(path)
        steps = doc.data.get("steps") if doc is not None and isinstance(doc.data, dict) else None
        for step in steps if isinstance(steps, list) else []:
            values = step.get("set") if isinstance(step, dict) else None
            if isinstance(values, dict):
                names.update(str(k) for k in values)
    return names


def load_playbooks(directory: Path, ctx: Context) -> tuple[list[Playbook], list[Problem]]:
    """Every playbook in `directory`; problems of all files reported together.

    A playbook with problems is still returned so that later checks (its templates) report too;
    callers must not run a set that came with problems."""
    if not directory.is_dir():
        return [], [Problem(str(directory), None, None, "playbooks folder not found")]
    playbooks: list[Playbook] = []
    problems: list[Problem] = []
    for path in playbook_files(directory):
        doc, errors = load_yaml_file(path)
        problems += errors
        if doc is not None:
            playbook, errors = parse_playbook(doc, path.stem, ctx)
            problems += errors
            if playbook is not None:
                playbooks.append(playbook)
    return playbooks, problems + _duplicate_ids(playbooks)


def _duplicate_ids(playbooks: list[Playbook]) -> list[Problem]:
    seen: dict[str, Playbook] = {}
    problems = []
    for playbook in playbooks:
        first = seen.setdefault(playbook.id, playbook)
        if first is not playbook:
            problems.append(Problem(playbook.file, 1, 1,
                                    f"duplicate playbook id {playbook.id!r} (also in {first.file})"))
    return problems
