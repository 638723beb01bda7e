"""The `steps:` of a playbook: email (recipients, variants, `from:`), task, webhook, set, wait, each
with its stable identity (its `id:` or a hash of its content) and an optional `when:`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from playbookd.config.reserved import reserved_field
from playbookd.config.yaml_loader import Key
from playbookd.errors import Where, did_you_mean
from playbookd.model.conditions import Condition, FieldTypes, parse_condition
from playbookd.model.fields import CONTACT_FIELDS
from playbookd.model.reader import Reader, unknown_keys
from playbookd.model.senders import sender_problem
from playbookd.model.steps import STEP_KINDS, EmailStep, SetStep, Step, TaskStep, Variant, WaitStep, WebhookStep

SPECIAL_RECIPIENTS = ("all", "primary")


RECIPIENT_FORM = ("'to' is all, primary, a role, a list of roles, or {role: ROLE, where: CONDITION} "
                  "to keep only the contacts the condition holds for")


def _filtered_recipients(reader: Reader, value: dict[Any, Any], path: Key) -> tuple[tuple[str, ...],
                                                                                       Condition | None]:
    unknown_keys(reader, value, ("role", "where"), path)
    roles = _recipients(reader, value.get("role", "all"), (*path, "role"))
    if "where" not in value:
        return roles, None
    contacts = reader.ctx.fields.contacts or FieldTypes(dict(CONTACT_FIELDS), changes=False)
    cond, problems = parse_condition(reader.doc, (*path, "where"), contacts)
    reader.problems += problems
    return roles, cond


def _recipients(reader: Reader, value: Any, path: Key) -> tuple[str, ...]:
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


def _variants(reader: Reader, spec: Mapping[str, Any], path: Key) -> tuple[Variant, ...]:
    if "template" in spec and "variants" in spec:
        reader.fail(path, "an email step has either 'template' or 'variants', not both")
    if "variants" not in spec:
        return (Variant("", reader.text(spec, "template", path), 1),)
    raw = spec["variants"]
    if not isinstance(raw, dict) or not raw:
        reader.fail((*path, "variants"), "'variants' maps a variant name to {template, weight}")
        return ()
    return tuple(_variant(reader, str(k), v, (*path, "variants", k)) for k, v in raw.items())


def _variant(reader: Reader, name: str, spec: Any, path: Key) -> Variant:
    if not isinstance(spec, dict):
        reader.fail(path, "a variant is {template: NAME, weight: N}")
        return Variant(name, "", 0)
    unknown_keys(reader, spec, ("template", "weight"), path)
    weight = spec.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
        reader.fail((*path, "weight"), "'weight' is a whole number, 0 or more")
        weight = 0
    return Variant(name, reader.text(spec, "template", path), weight)


def _email(reader: Reader, spec: Any, path: Key) -> EmailStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "email takes {template: NAME, to: ROLE} or {to: ..., variants: {...}}")
        return None
    unknown_keys(reader, spec, ("template", "to", "variants", "from"), path)
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
    return EmailStep(to, variants, reader.where(path), only=only, sender=sender.strip() if sender else None)


def _task(reader: Reader, spec: Any, path: Key) -> TaskStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "task takes {title: TEXT, assign: csm, due_in: 2d}")
        return None
    unknown_keys(reader, spec, ("title", "assign", "due_in"), path)
    due = spec.get("due_in")
    due_in = None if due is None else reader.duration(due, (*path, "due_in"))
    assign = spec.get("assign", "csm")
    if not isinstance(assign, str) or (assign != "csm" and "@" not in assign):
        reader.fail((*path, "assign"), "'assign' is csm (the account's CSM) or an email address")
    return TaskStep(reader.text(spec, "title", path), str(assign), due_in, reader.where(path))


def _webhook(reader: Reader, spec: Any, path: Key) -> WebhookStep | None:
    if not isinstance(spec, dict):
        reader.fail(path, "webhook takes {url: URL, body: {...}}")
        return None
    unknown_keys(reader, spec, ("url", "body"), path)
    return WebhookStep(reader.text(spec, "url", path), spec.get("body", {}), reader.where(path))


def _set(reader: Reader, spec: Any, path: Key) -> SetStep | None:
    if not isinstance(spec, dict) or not spec:
        reader.fail(path, "set takes {field: value, ...}")
        return None
    for key, value in spec.items():
        if why := reserved_field(str(key)):
            reader.fail((*path, key), f"set: {why}; a step cannot write it")
        elif key in ("id", "segment") or isinstance(value, (dict, list)):
            reader.fail((*path, key), f"cannot set {key!r} to {value!r}: one plain value per field")
    return SetStep(dict(spec), reader.where(path))


def _step(reader: Reader, data: Any, path: Key) -> Step | None:
    step = _step_body(reader, data, path)
    if step is None or not isinstance(data, dict) or data.get("when") is None:
        return step
    return replace(step, when=reader.condition((*path, "when"), enrollment=True))


def _step_body(reader: Reader, data: Any, path: Key) -> Step | None:
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
        return _wait(reader, spec, (*path, kind), reader.where(path))
    return _STEP_READERS[kind](reader, spec, (*path, kind))


def _wait(reader: Reader, spec: Any, path: Key, where: Where) -> WaitStep | None:
    """`wait: 3d`, or `wait: {until_task_done: true, at_most: 7d}`: over when the task is closed."""
    if not isinstance(spec, dict):
        span = reader.duration(spec, path)
        return None if span is None else WaitStep(span, where)
    unknown_keys(reader, spec, ("until_task_done", "at_most"), path)
    if spec.get("until_task_done") is not True:
        reader.fail((*path, "until_task_done"), "a wait is a duration (wait: 3d) or {until_task_done: true, "
                    "at_most: 7d}")
        return None
    if "at_most" not in spec:
        reader.fail(path, "until_task_done needs at_most: the longest to wait (e.g. at_most: 7d)")
        return None
    span = reader.duration(spec["at_most"], (*path, "at_most"))
    return None if span is None else WaitStep(span, where, until_task_done=True)


def _task_before_waits(reader: Reader, steps: list[tuple[Step | None, Key]]) -> None:
    """A wait for a task needs a task step before it to wait for."""
    seen_task = False
    for step, path in steps:
        seen_task = seen_task or isinstance(step, TaskStep)
        if isinstance(step, WaitStep) and step.until_task_done and not seen_task:
            reader.fail((*path, "wait", "until_task_done"), "until_task_done waits for the task of an earlier "
                        "task step, and no task step comes before this wait")


_STEP_READERS = {"email": _email, "task": _task, "webhook": _webhook, "set": _set}


def read_steps(reader: Reader, data: Any) -> tuple[tuple[Step, ...], tuple[str, ...]]:
    """The steps and their keys: an explicit `id:`, else one derived from the step's content, so that
    inserting, removing or reordering steps never moves an enrollment in flight to the wrong one."""
    if not isinstance(data, list) or not data:
        reader.fail(("steps",), "'steps' is a non-empty list")
        return (), ()
    found = [(_step(reader, item, ("steps", i)), _step_key(reader, item, ("steps", i))) for i, item in enumerate(data)]
    _duplicate_step_ids(reader, data)
    _task_before_waits(reader, [(step, ("steps", i)) for i, (step, _) in enumerate(found)])
    kept = [(step, key) for step, key in found if step is not None]
    return tuple(step for step, _ in kept), _unique([key for _, key in kept])


def _duplicate_step_ids(reader: Reader, data: list[Any]) -> None:
    ids = [item["id"] for item in data if isinstance(item, dict) and "id" in item]
    for index, item in enumerate(data):
        if isinstance(item, dict) and "id" in item and ids.count(item["id"]) > 1:
            reader.fail(("steps", index, "id"), f"step id {item['id']!r} is used {ids.count(item['id'])} times")


def _step_key(reader: Reader, item: Any, path: Key) -> str:
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
