"""Playbooks: one YAML file each, parsed and checked into typed, immutable objects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from playbookd.config.yaml_loader import Located, load_yaml_file
from playbookd.errors import Problem, Where, did_you_mean
from playbookd.model.conditions import TRUE, Condition
from playbookd.model.launch import Launch, read_launch, read_status
from playbookd.model.reader import KNOWN_ROLES, Context, Reader, unknown_keys
from playbookd.model.schedules import read_schedule
from playbookd.model.step_specs import read_steps
from playbookd.model.steps import Goal, Playbook, Schedule

TOP_KEYS = ("id", "name", "description", "enabled", "category", "priority", "audience",
            "trigger", "reenter_after", "exit_when", "steps", "goal", "control", "status", "launch")
CATEGORIES_HINT = "e.g. product_tips, renewals, surveys, onboarding, operational"


def _audience(reader: Reader, data: Any) -> tuple[str, ...] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        reader.fail(("audience",), "'audience' takes {segments: [...]}")
        return None
    unknown_keys(reader, data, ("segments",), ("audience",))
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


def _schedule(reader: Reader, data: Mapping[str, Any]) -> Schedule | None:
    schedule, problems = read_schedule(data, reader.ctx.tz)
    for path, message in problems:
        reader.fail(path, message)
    return schedule


def _trigger(reader: Reader, data: Any) -> tuple[str | None, Condition, Schedule | None]:
    if not isinstance(data, dict) or not data:
        reader.fail(("trigger",), TRIGGER_FORM)
        return None, TRUE, None
    unknown_keys(reader, data, ("when", "event", "schedule", "catch_up"), ("trigger",))
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


def _goal(reader: Reader, data: Any) -> Goal | None:
    if data is None:
        return None
    if not isinstance(data, dict) or "when" not in data:
        reader.fail(("goal",), "'goal' takes {when: CONDITION, within: DURATION, exit: true|false}")
        return None
    unknown_keys(reader, data, ("when", "within", "exit"), ("goal",))
    within = data.get("within")
    seconds = None if within is None else reader.duration(within, ("goal", "within"))
    leaves = data.get("exit", True)
    if not isinstance(leaves, bool):
        reader.fail(("goal", "exit"), "'exit' is true (a met goal ends the enrollment) or false")
    return Goal(reader.condition(("goal", "when")), seconds, leaves is not False, reader.where(("goal", "when")))


def _control(reader: Reader, data: Any) -> float:
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


def _header(reader: Reader, data: Mapping[str, Any], stem: str) -> dict[str, Any]:
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
    reader = Reader(doc, ctx)
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.problem((), "a playbook file holds one mapping (id, trigger, steps, ...)")]
    unknown_keys(reader, data, TOP_KEYS, ())
    head = _header(reader, data, stem)
    event, trigger, schedule = _trigger(reader, data.get("trigger"))
    reenter = data.get("reenter_after")
    if schedule is not None and reenter is not None:
        reader.fail(("reenter_after",), "a scheduled playbook enters its accounts at every occurrence; "
                    "reenter_after does not apply")
    steps, keys = read_steps(reader, data.get("steps"))
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


def _launch(reader: Reader, data: Mapping[str, Any]) -> Launch:
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


__all__ = ["KNOWN_ROLES", "Context", "load_playbooks", "parse_playbook", "playbook_files", "set_step_fields"]
