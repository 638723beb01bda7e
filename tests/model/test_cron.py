"""Calendar schedules: crontab meaning (0 = Sunday), the config's time zone, located problems, and
the daemon's timer at each occurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbookd.config.yaml_loader import parse_yaml
from playbookd.model.conditions import FieldTypes
from playbookd.model.cron import latest, occurrences, schedule_problem
from playbookd.model.fields import ACCOUNT_FIELDS
from playbookd.model.playbooks import Context, parse_playbook
from playbookd.service.scheduler import Scheduler

PARIS = ZoneInfo("Europe/Paris")
JAN = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def days(expression: str) -> list[str]:
    return [t.astimezone(PARIS).strftime("%a %d") for t in occurrences(expression, PARIS, JAN, JAN + timedelta(7))]


@pytest.mark.parametrize(("weekday", "expected"), [
    ("1", ["Mon 05"]),                     # APScheduler 3 alone would say Tuesday
    ("0", ["Sun 04"]), ("7", ["Sun 04"]),
    ("1-5", ["Thu 01", "Fri 02", "Mon 05", "Tue 06", "Wed 07"]),
    ("5-7", ["Fri 02", "Sat 03", "Sun 04"]),
    ("*/2", ["Thu 01", "Sat 03", "Sun 04", "Tue 06"]),  # Sunday, Tuesday, Thursday, Saturday
    ("mon,fri", ["Fri 02", "Mon 05"]),
])
def test_day_of_week_counts_as_crontab_does(weekday: str, expected: list[str]) -> None:
    assert days(f"0 9 * * {weekday}") == expected


def test_times_are_in_the_configured_zone_across_daylight_saving() -> None:
    found = occurrences("0 9 1 * *", PARIS, JAN, datetime(2026, 5, 1, 12, tzinfo=UTC))
    assert [t.strftime("%m-%d %H:%M") for t in found] == ["01-01 08:00", "02-01 08:00", "03-01 08:00",
                                                          "04-01 07:00", "05-01 07:00"]


def test_latest_finds_the_last_occurrence_in_the_window_only() -> None:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert latest("0 9 1 * *", UTC, now, timedelta(days=1)) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert latest("0 9 1 * *", UTC, now - timedelta(hours=1), timedelta(days=1)) is None
    assert latest("* * * * *", UTC, now, timedelta(days=366)) == now.replace(second=0)


@pytest.mark.parametrize(("expression", "fragment"), [
    ("0 9 1 *", "5 fields"), ("0 25 1 * *", "higher than the maximum"), ("0 9 * * 8", "past 7"),
    ("0 9 * * funday", "bad day of week"), ("0 9 * * fun", "unknown day"), ("", "cron expression"),
])
def test_bad_schedules_are_explained(expression: str, fragment: str) -> None:
    why = schedule_problem(expression, UTC)
    assert why is not None and fragment in why


def parse(text: str) -> list[str]:
    doc, problems = parse_yaml(text, "news.yaml")
    assert doc is not None, problems
    _, problems = parse_playbook(doc, "news", Context(FieldTypes(dict(ACCOUNT_FIELDS)), ("default",)))
    return [f"{p.line}: {p.message}" for p in problems]


STEPS = "steps:\n  - task: {title: t}\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("trigger:\n  schedule: '0 9 32 * *'\n" + STEPS, "2: bad schedule '0 9 32 * *'"),
    ("trigger:\n  schedule: '0 9 1 * *'\n  catch_up: 3mo\n" + STEPS, "3: bad duration '3mo'"),
    ("trigger:\n  schedule: '0 9 1 * *'\nreenter_after: 30d\n" + STEPS, "3: a scheduled playbook enters"),
    ("trigger:\n  event: x\n  schedule: '0 9 1 * *'\n" + STEPS, "3: a trigger has an event or a schedule"),
    ("trigger:\n  catch_up: 1d\n  when: {plan: x}\n" + STEPS, "2: 'catch_up' goes with 'schedule'"),
])
def test_schedule_problems_are_located_in_the_playbook(text: str, expected: str) -> None:
    problems = parse(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_schedule_alone_is_a_trigger() -> None:
    assert parse("trigger: {schedule: '0 9 1 * *'}\n" + STEPS) == []


def test_the_scheduler_runs_a_cron_job_and_keeps_it_over_a_reload() -> None:
    scheduler = Scheduler()
    scheduler.start()
    try:
        scheduler.cron("calendar:news", "0 9 1 * *", PARIS, lambda: None)
        first = scheduler.next_run("calendar:news")
        assert first is not None and (first.astimezone(PARIS).day, first.astimezone(PARIS).hour) == (1, 9)
        assert scheduler.interval("calendar:news") is None
        scheduler.cron("calendar:news", "0 9 1 * *", PARIS, lambda: None)
        assert scheduler.next_run("calendar:news") == first
        scheduler.cron("calendar:news", "0 9 * * 1", PARIS, lambda: None)
        assert scheduler.next_run("calendar:news").astimezone(PARIS).weekday() == 0  # type: ignore[union-attr]
    finally:
        scheduler.shutdown(wait=True)
