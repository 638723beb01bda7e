"""Quiet hours in the recipient's own time zone, across midnight, weekends and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from playbookd.config.delivery import QuietHours
from playbookd.delivery.holds import next_allowed

NIGHT = QuietHours(start="20:00", end="08:00")
LUNCH = QuietHours(start="12:00", end="13:00")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("now", "zone", "quiet", "expected"), [
    (utc(2026, 3, 4, 15, 0), "UTC", NIGHT, None),                                  # afternoon
    (utc(2026, 3, 4, 20, 0), "UTC", NIGHT, utc(2026, 3, 5, 8, 0)),                 # start is quiet
    (utc(2026, 3, 4, 7, 59), "UTC", NIGHT, utc(2026, 3, 4, 8, 0)),                 # before the end
    (utc(2026, 3, 4, 8, 0), "UTC", NIGHT, None),                                   # end is not quiet
    (utc(2026, 3, 4, 15, 0), "Asia/Tokyo", NIGHT, utc(2026, 3, 4, 23, 0)),         # midnight in Tokyo
    (utc(2026, 3, 4, 15, 0), "America/New_York", NIGHT, None),                     # 10:00 in New York
    (utc(2026, 3, 4, 12, 30), "UTC", LUNCH, utc(2026, 3, 4, 13, 0)),               # a window inside a day
    (utc(2026, 3, 4, 23, 0), "UTC", LUNCH, None),
    (utc(2026, 3, 4, 23, 0), "Not/AZone", NIGHT, utc(2026, 3, 5, 8, 0)),           # unknown zone: UTC
])
def test_next_allowed(now: datetime, zone: str, quiet: QuietHours, expected: datetime | None) -> None:
    assert next_allowed(now, zone, quiet) == expected


def test_the_morning_after_a_dst_change_is_local_eight_oclock() -> None:
    # Europe/Berlin moves from UTC+1 to UTC+2 on 2026-03-29 at 02:00
    got = next_allowed(utc(2026, 3, 28, 22, 0), "Europe/Berlin", NIGHT)
    assert got == utc(2026, 3, 29, 6, 0)


def test_weekends_hold_until_monday_morning() -> None:
    weekends = QuietHours(start="20:00", end="08:00", weekends=True)
    friday_night = utc(2026, 3, 6, 21, 0)
    assert next_allowed(friday_night, "UTC", weekends) == utc(2026, 3, 9, 8, 0)
    assert next_allowed(utc(2026, 3, 7, 12, 0), "UTC", weekends) == utc(2026, 3, 9, 8, 0)
    assert next_allowed(utc(2026, 3, 7, 12, 0), "UTC", NIGHT) is None


def test_the_answer_is_in_the_callers_time_zone_and_never_in_quiet_hours() -> None:
    for hour in range(24):
        now = utc(2026, 3, 4, hour, 17)
        got = next_allowed(now, "Australia/Adelaide", NIGHT)  # a half-hour offset
        if got is not None:
            assert got.tzinfo == UTC and got > now
            assert next_allowed(got, "Australia/Adelaide", NIGHT) is None
