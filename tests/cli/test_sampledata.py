"""The sample data generator: deterministic, lazy, realistic enough for every sample playbook."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest

from playbookd.cli.sampledata import (
    ACCOUNT_COLUMNS,
    CONTACT_COLUMNS,
    POOLED_CSM,
    generate,
    iter_accounts,
    iter_contacts,
    write_csv,
    write_sample,
)
from playbookd.model import fields as F

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
Sample = tuple[list[dict[str, str]], list[dict[str, str]]]


def _segment(row: dict[str, str]) -> str:
    arr = int(row["annual_revenue"])
    return "high_touch" if arr >= 100_000 else "low_touch" if arr >= 20_000 else "tech_touch"


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def sample() -> Sample:
    return generate(2000, NOW, seed=7)


def test_same_seed_same_rows_and_other_seed_other_rows() -> None:
    assert generate(40, NOW, 7) == generate(40, NOW, 7)
    assert generate(40, NOW, 7)[0] != generate(40, NOW, 8)[0]


def test_first_rows_do_not_depend_on_how_many_are_asked_for() -> None:
    small, big = generate(10, NOW), generate(60, NOW)
    assert big[0][:10] == small[0]
    assert big[1][: len(small[1])] == small[1]


def test_generators_are_lazy() -> None:
    accounts, contacts = generate(10, NOW)
    assert list(islice(iter_accounts(10**9, NOW), 10)) == accounts
    assert list(islice(iter_contacts(10**9, NOW), len(contacts))) == contacts


def test_naive_now_is_utc() -> None:
    assert generate(5, NOW.replace(tzinfo=None)) == generate(5, NOW)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        generate(-1, NOW)


def test_columns_are_complete_and_text(sample: Sample) -> None:
    accounts, contacts = sample
    assert {"id", "name", "annual_revenue", "renewal_date", "last_login_at", "seat_utilization"} <= set(
        ACCOUNT_COLUMNS)
    assert all(tuple(a) == ACCOUNT_COLUMNS for a in accounts)
    assert all(tuple(c) == CONTACT_COLUMNS for c in contacts)
    assert all(isinstance(v, str) for row in accounts + contacts for v in row.values())
    assert len({a["id"] for a in accounts}) == len(accounts)
    assert accounts[122]["id"] == "ACC-000123"


def test_values_infer_to_the_well_known_types(sample: Sample) -> None:
    row = sample[0][0]
    assert F.infer(row["renewal_date"])[0] == F.DATE
    assert F.infer(row["signup_date"])[0] == F.DATE
    assert F.infer(row["last_login_at"])[0] == F.DATETIME
    assert F.infer(row["annual_revenue"])[0] == F.INTEGER
    assert all(a["last_login_at"] == "" or a["last_login_at"].endswith("Z") for a in sample[0])


def test_segments_are_mostly_tech_touch_and_all_occur(sample: Sample) -> None:
    share = {k: v / len(sample[0]) for k, v in Counter(_segment(a) for a in sample[0]).items()}
    assert 0.6 <= share["tech_touch"] <= 0.8
    assert 0.1 <= share["low_touch"] <= 0.3
    assert 0.04 <= share["high_touch"] <= 0.2


def test_plan_and_csm_follow_revenue(sample: Sample) -> None:
    order = ["starter", "growth", "business", "enterprise"]
    ranked = sorted(sample[0], key=lambda a: int(a["annual_revenue"]))
    ranks = [order.index(a["plan"]) for a in ranked]
    assert ranks == sorted(ranks)
    for account in sample[0]:
        pooled = account["csm_email"] == POOLED_CSM
        assert pooled == (_segment(account) == "tech_touch")


def test_seat_utilization_is_the_rounded_percentage(sample: Sample) -> None:
    for account in sample[0]:
        used, bought = int(account["seats_used"]), int(account["seats_purchased"])
        assert 0 < used <= bought
        assert abs(int(account["seat_utilization"]) - used * 100 / bought) <= 0.5
    gaps = sum(int(a["seat_utilization"]) < 50 for a in sample[0]) / len(sample[0])
    assert 0.1 <= gaps <= 0.4


def test_about_a_quarter_have_not_logged_in_for_a_week(sample: Sample) -> None:
    logins = [_when(a["last_login_at"]) for a in sample[0] if a["last_login_at"]]
    stale = sum(moment < NOW - timedelta(days=7) for moment in logins) / len(sample[0])
    assert 0.15 <= stale <= 0.35
    assert all(moment <= NOW for moment in logins)


def test_contacts_are_well_formed(sample: Sample) -> None:
    by_account: dict[str, list[dict[str, str]]] = {}
    for contact in sample[1]:
        by_account.setdefault(contact["account_id"], []).append(contact)
    assert set(by_account) == {a["id"] for a in sample[0]}
    for people in by_account.values():
        emails = [p["email"] for p in people]
        assert 1 <= len(people) <= 4
        assert len(set(emails)) == len(emails)
        assert all(e.isascii() and e.count("@") == 1 and e.endswith(".example") for e in emails)
        assert sum(p["is_primary"] == "true" for p in people) <= 1
        assert people[0]["role"] == "admin" and people[0]["status"] == "active"
    assert {c["role"] for c in sample[1]} == {"admin", "champion", "user", "billing"}
    assert {c["status"] for c in sample[1]} == {"active", "left"}
    zones = {c["timezone"] for c in sample[1]}
    assert {"America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney"} <= zones


def test_every_sample_playbook_has_accounts_to_match() -> None:
    accounts, _ = generate(300, NOW)
    today = NOW.date()
    active = [a for a in accounts if a["status"] == "active"]
    renewing = [a for a in active if today <= date.fromisoformat(a["renewal_date"]) <= today + timedelta(90)
                and int(a["open_escalations"]) > 0]
    assert {_segment(a) for a in renewing} == {"high_touch", "low_touch", "tech_touch"}
    assert any(date.fromisoformat(a["signup_date"]) >= today - timedelta(7)
               and a["lifecycle_stage"] == "onboarding" for a in active)
    assert any(int(a["seat_utilization"]) < 50 and a["lifecycle_stage"] in ("adopted", "expanding")
               for a in active)
    assert any(a["last_login_at"] and _when(a["last_login_at"]) < NOW - timedelta(days=7)
               and a["lifecycle_stage"] in ("onboarding", "adopted") for a in active)
    scores = [int(a["nps"]) for a in active if a["nps"]]
    assert min(scores) <= 6 and max(scores) >= 9


def test_write_csv_streams_any_iterable(tmp_path: Path) -> None:
    rows = ({"a": str(i), "b": "x,y"} for i in range(3))
    assert write_csv(tmp_path / "t.csv", rows) == 3
    with (tmp_path / "t.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"a": str(i), "b": "x,y"} for i in range(3)]
    assert write_csv(tmp_path / "empty.csv", iter(()), ["a", "b"]) == 0
    assert (tmp_path / "empty.csv").read_text() == "a,b\n"


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_write_sample_round_trips(tmp_path: Path) -> None:
    accounts_path, contacts_path = write_sample(tmp_path / "out", 25, NOW)
    accounts, contacts = generate(25, NOW)
    assert _read(accounts_path) == accounts
    assert _read(contacts_path) == contacts


def test_committed_sample_is_what_the_generator_writes() -> None:
    accounts, contacts = generate(300, NOW, seed=7)
    assert _read(REPO / "data" / "accounts.csv") == accounts
    assert _read(REPO / "data" / "contacts.csv") == contacts


def test_the_csm_judges_usage_fit_where_there_is_a_csm_and_busy_accounts_can_be_a_poor_fit(sample: Sample) -> None:
    judged = Counter((_segment(a), a["usage_fit"]) for a in sample[0])
    assert {fit for (segment, fit) in judged if segment == "tech_touch"} == {""}, "no named CSM to judge"
    for segment in ("high_touch", "low_touch"):
        assert {fit for (s, fit) in judged if s == segment} == {"yes", "investigate", "no", ""}
    watermelons = [a for a in sample[0] if int(a["seat_utilization"]) >= 80 and a["usage_fit"] == "no"]
    assert watermelons, "high usage is not high value: some busy accounts are judged a poor fit"
