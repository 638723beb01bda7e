"""`trigger: {schedule: CRON, catch_up: 1d}`: a calendar playbook's schedule, checked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta, tzinfo
from typing import Any

from playbookd.config.durations import parse_duration
from playbookd.config.yaml_loader import Key
from playbookd.model.cron import MAX_CATCH_UP, schedule_problem
from playbookd.model.steps import Schedule

DEFAULT_CATCH_UP = timedelta(days=1)


def read_schedule(trigger: Mapping[str, Any], tz: tzinfo) -> tuple[Schedule | None, list[tuple[Key, str]]]:
    """The schedule of a trigger (None without one) and its problems, each at its path in the playbook.
    The cron expression is in config.yaml's time zone; `catch_up` is how long after an occurrence the
    daemon, back from being down, still runs it."""
    problems: list[tuple[Key, str]] = []
    if "schedule" not in trigger:
        if "catch_up" in trigger:
            problems.append((("trigger", "catch_up"), "'catch_up' goes with 'schedule'"))
        return None, problems
    if "event" in trigger:
        problems.append((("trigger", "schedule"), "a trigger has an event or a schedule, not both"))
    if why := schedule_problem(trigger["schedule"], tz):
        return None, [*problems, (("trigger", "schedule"), why)]
    catch_up = DEFAULT_CATCH_UP
    if "catch_up" in trigger:
        try:
            catch_up = parse_duration(trigger["catch_up"])
        except ValueError as exc:
            problems.append((("trigger", "catch_up"), str(exc)))
        if not timedelta(minutes=1) <= catch_up <= MAX_CATCH_UP:
            problems.append((("trigger", "catch_up"), "'catch_up' is from 1min to 366d"))
    return Schedule(" ".join(str(trigger["schedule"]).split()), catch_up), problems
