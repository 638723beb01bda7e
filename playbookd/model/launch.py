"""How a playbook goes live: its `status` (draft, live, paused, retired) and its `launch:` settings.

`enabled:` is the older form of `status:` (true is live, false is retired); it is still read, with
a warning from `validate`, and refused next to `status:` since the two could disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playbookd.config.yaml_loader import Located, load_yaml_file
from playbookd.errors import Problem, did_you_mean

STATUSES = ("draft", "live", "paused", "retired")
# enrollments of a playbook in one of these wait where they are and its queued mail stays queued
HOLDING = frozenset({"draft", "paused"})
LAUNCH_KEYS = ("max_new_per_day", "warn_over")


@dataclass(frozen=True)
class Launch:
    max_new_per_day: int | None = None  # None: no ramp
    warn_over: int | None = None  # None: config.yaml's launch.warn_over

    @property
    def ramped(self) -> bool:
        return self.max_new_per_day is not None


def read_status(doc: Located, data: Mapping[str, Any]) -> tuple[str, list[Problem]]:
    """The playbook's status as written, from `status:` or the older `enabled:`."""
    problems: list[Problem] = []
    if "enabled" in data:
        enabled = data["enabled"]
        if "status" in data:
            problems.append(doc.problem(("enabled",), "'enabled' and 'status' together: keep only 'status' "
                                        "('enabled: false' is 'status: retired', 'enabled: true' is 'status: live')"))
        elif not isinstance(enabled, bool):
            problems.append(doc.problem(("enabled",), "'enabled' is true or false (better: status: live or retired)"))
        else:
            return ("live" if enabled else "retired"), problems
    status = data.get("status", "live")
    if status not in STATUSES:
        hint = did_you_mean(str(status), STATUSES)
        problems.append(doc.problem(("status",), f"'status' is one of {', '.join(STATUSES)}, not {status!r}{hint}"))
        return "live", problems
    return str(status), problems


def _whole(doc: Located, raw: Mapping[str, Any], key: str, problems: list[Problem]) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        problems.append(doc.problem(("launch", key), f"'{key}' is a whole number, 1 or more"))
        return None
    return value


def read_launch(doc: Located, data: Mapping[str, Any]) -> tuple[Launch, list[Problem]]:
    raw = data.get("launch")
    if raw is None:
        return Launch(), []
    if not isinstance(raw, dict):
        return Launch(), [doc.problem(("launch",), "'launch' takes {max_new_per_day: N, warn_over: N}")]
    allowed = f"; allowed: {', '.join(LAUNCH_KEYS)}"
    problems = [doc.problem(("launch", key), f"unknown key {key!r}{did_you_mean(str(key), LAUNCH_KEYS, allowed)}")
                for key in raw if key not in LAUNCH_KEYS]
    launch = Launch(_whole(doc, raw, "max_new_per_day", problems), _whole(doc, raw, "warn_over", problems))
    return launch, problems


def deprecated(doc: Located) -> list[Problem]:
    """Warnings for keys that still work but have a newer form."""
    data = doc.data
    if isinstance(data, dict) and "enabled" in data and "status" not in data and isinstance(data["enabled"], bool):
        new = "live" if data["enabled"] else "retired"
        return [doc.problem(("enabled",), f"'enabled' is deprecated: write 'status: {new}' (statuses: "
                                          f"{', '.join(STATUSES)})")]
    return []


@dataclass(frozen=True)
class Declared:
    """A playbook's id, status and launch settings as its file declares them, read without checking the
    rest: what `status` and `playbooks pause|resume` need even when another part of the file is wrong."""

    id: str
    status: str
    launch: Launch


def _files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]) if directory.is_dir() else []


def declared(directory: Path) -> list[Declared]:
    found: list[Declared] = []
    for path in _files(directory):
        doc, _ = load_yaml_file(path)
        if doc is None or not isinstance(doc.data, dict):
            continue
        pid = doc.data.get("id", path.stem)
        status, _ = read_status(doc, doc.data)
        launch, _ = read_launch(doc, doc.data)
        found.append(Declared(str(pid), status, launch))
    return found


def deprecations(directory: Path) -> list[Problem]:
    problems: list[Problem] = []
    for path in _files(directory):
        doc, _ = load_yaml_file(path)
        problems += deprecated(doc) if doc is not None else []
    return problems
