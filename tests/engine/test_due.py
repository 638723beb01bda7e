"""Due times against the reference evaluator: until the computed flip the answer stays, at it it moves;
and what makes an evaluation look at every account."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from playbookd.config.durations import Months
from playbookd.engine import scope as S
from playbookd.engine.due import DueTimes, flips, volatile
from playbookd.engine.statuses import set_status
from playbookd.model.account import CONTACTS
from playbookd.model.conditions import FUTURE, PAST, All, Contacts, Leaf, Not, Trend
from playbookd.model.evaluation import EPOCH, epoch_us, evaluate
from playbookd.model.launch import Declared
from playbookd.store.schema import fields

TZ = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@pytest.mark.parametrize(("op", "expected"), [
    ("older_than", [10 * 86_400_000_000 + 3 * 86_400_000_000 + 1]),
    ("within_last", [10 * 86_400_000_000 + 3 * 86_400_000_000 + 1]),
    ("within_next", [10 * 86_400_000_000 - 3 * 86_400_000_000, 10 * 86_400_000_000 + 1]),
    ("beyond_next", [10 * 86_400_000_000 - 3 * 86_400_000_000]),
])
def test_each_operator_flips_where_the_reference_answer_moves(op: str, expected: list[int]) -> None:
    leaf = Leaf("renewal_at", op, 3 * 86_400)
    value = 10 * 86_400_000_000
    assert flips(leaf, value, TZ) == expected
    record = {"renewal_at": at(value)}
    for flip in expected:
        assert evaluate(leaf, record, at(flip - 1), TZ) != evaluate(leaf, record, at(flip), TZ)


SPANS = st.one_of(st.integers(1, 90 * 86_400), st.builds(Months, st.integers(1, 14)))
MOMENTS = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(PAST + FUTURE), span=SPANS, value=st.one_of(MOMENTS, st.dates(date(2025, 1, 1),
       date(2027, 12, 31))), now=MOMENTS, probe=st.floats(0, 1))
def test_the_answer_holds_until_the_next_flip_and_moves_there(op: str, span: Any, value: Any, now: datetime,
                                                              probe: float) -> None:
    leaf = Leaf("f", op, span)
    record = {"id": "a", "f": value}
    due = DueTimes([leaf], TZ).next_flip(record, now)
    answer = evaluate(leaf, record, now, TZ)
    if due is None:  # no flip ahead: the answer is final
        for later in (now + timedelta(days=400), now + timedelta(days=4000)):
            assert evaluate(leaf, record, later, TZ) == answer
        return
    now_us = epoch_us(now, TZ)
    assert due > now_us
    between = now_us + int((due - 1 - now_us) * probe)
    assert evaluate(leaf, record, at(between), TZ) == answer
    assert evaluate(leaf, record, at(due - 1), TZ) == answer
    assert evaluate(leaf, record, at(due), TZ) != answer


def test_the_earliest_flip_wins_across_leaves_fields_and_contacts() -> None:
    login = Leaf("last_login_at", "older_than", 7 * 86_400)
    renewal = Leaf("renewal_date", "within_next", 30 * 86_400)
    seen = Contacts("any", Leaf("last_seen_at", "within_last", 86_400))
    dues = DueTimes([All((Not(login), renewal)), seen], TZ)
    record = {"id": "a", "last_login_at": NOW - timedelta(days=2), "renewal_date": date(2026, 6, 1),
              CONTACTS: [{"last_seen_at": NOW - timedelta(hours=20)}, {"last_seen_at": "not a time"}]}
    assert dues.next_flip(record, NOW) == epoch_us(NOW + timedelta(hours=4), TZ) + 1  # the contact's
    record[CONTACTS] = []
    assert dues.next_flip(record, NOW) == epoch_us(NOW + timedelta(days=5), TZ) + 1  # the login's
    assert DueTimes([Leaf("plan", "eq", "pro")], TZ).next_flip(record, NOW) is None
    assert not DueTimes([Leaf("plan", "eq", "pro")], TZ)


SPANS = st.one_of(st.integers(1, 90 * 86_400).map(float), st.integers(1, 14).map(lambda n: Months(n)))
LEAVES = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(sorted((*PAST, *FUTURE))), SPANS),
                  min_size=1, max_size=6)
INSTANTS = st.one_of(st.datetimes(datetime(2025, 6, 1), datetime(2026, 12, 1), timezones=st.just(UTC)),
                     st.dates(date(2025, 6, 1), date(2026, 12, 1)))


@settings(max_examples=300, deadline=None)
@given(LEAVES, st.dictionaries(st.sampled_from(["a", "b"]), INSTANTS))
def test_the_next_flip_is_the_earliest_of_every_leafs_flips_after_now(
        specs: list[tuple[str, str, Any]], record: dict[str, Any]) -> None:
    """Spans in seconds are worked out once per field as offsets: the same answer as each leaf's flips."""
    leaves = [Leaf(name, op, span) for name, op, span in specs]
    now_us = epoch_us(NOW, TZ)
    every = [t for leaf in leaves if leaf.field in record
             for t in flips(leaf, epoch_us(record[leaf.field], TZ), TZ) if t > now_us]
    assert DueTimes([All(tuple(leaves))], TZ).next_flip(record, NOW) == (min(every) if every else None)


def test_trend_conditions_have_no_flip_time_and_make_their_playbook_volatile() -> None:
    trend = Leaf("health_score", "dropped_by", Trend(15.0, 30 * 86_400))
    assert volatile(All((Leaf("plan", "eq", "pro"), Not(trend))))
    assert not volatile(Leaf("last_login_at", "older_than", 86_400))
    assert not volatile(None)


PLAYBOOK = "id: nudge\ntrigger: {when: {last_login_at: {older_than: 7d}}}\nsteps:\n  - task: {title: t, assign: csm}\n"


def _full_reasons(project: Any, now: datetime) -> str | None:
    with project.engine.connect() as conn:
        return S.wants_full(project.runtime, conn, now)


def _record(project: Any, now: datetime) -> None:
    with project.engine.begin() as conn:
        S.record_full(project.runtime, conn, now)


def test_a_full_evaluation_is_due_first_then_on_changes_and_every_full_every(make: Any, db_url: str) -> None:
    project = make({"nudge": PLAYBOOK}, database=db_url, evaluation={"full_every": "1d"})
    assert _full_reasons(project, NOW) == "no full evaluation recorded"
    _record(project, NOW)
    assert _full_reasons(project, NOW + timedelta(hours=23)) is None
    assert _full_reasons(project, NOW + timedelta(days=1)) == "evaluation.full_every has passed"
    original = project.runtime
    changed = "playbooks, their statuses, the fields' types or the settings they depend on changed"
    edited = dataclasses.replace(original.playbooks[0], trigger=Leaf("last_login_at", "older_than", 86_400))
    project.runtime = dataclasses.replace(original, playbooks=(edited,))
    assert _full_reasons(project, NOW + timedelta(hours=1)) == changed
    project.runtime = dataclasses.replace(original, exit_when=Leaf("plan", "eq", "pro"))
    assert _full_reasons(project, NOW + timedelta(hours=1)) == changed
    for setting in ({"timezone": "America/Chicago"}, {"health": None}):
        assert original.config.model_dump()[next(iter(setting))] is not None
        project.runtime = dataclasses.replace(original, config=original.config.model_copy(update=setting))
        assert _full_reasons(project, NOW + timedelta(hours=1)) == changed, setting
    project.runtime = original
    assert _full_reasons(project, NOW + timedelta(hours=1)) is None
    with project.engine.begin() as conn:  # a sync typed a new column: every account reads differently
        conn.execute(insert(fields).values(entity="accounts", name="seat_count", type="integer"))
    assert _full_reasons(project, NOW + timedelta(hours=1)) == changed
    _record(project, NOW + timedelta(hours=1))
    assert _full_reasons(project, NOW + timedelta(hours=1)) is None
    nudge = Declared("nudge", "live", original.playbooks[0].launch)
    set_status(project.engine, nudge, "paused", NOW, None)
    assert _full_reasons(project, NOW + timedelta(hours=1)) == changed
    _record(project, NOW + timedelta(hours=1))
    set_status(project.engine, nudge, "live", NOW, None)  # resumed: whoever qualifies meanwhile enters
    assert _full_reasons(project, NOW + timedelta(hours=2)) == changed
