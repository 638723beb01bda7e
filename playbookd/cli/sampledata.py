"""Realistic B2B SaaS sample data: accounts and contacts as CSV text, relative to a given `now`.

Rows are produced lazily and row k depends only on (k, now, seed), so the first rows are the
same whatever the total; the same code writes the 300-account demo and million-account
benchmarks without holding them in memory. Every value is relative to `now` so the demo
always has accounts that each sample playbook matches.
"""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from playbookd.cli.sample_vocabulary import (
    _DAY,
    _ENTERPRISE,
    _FIRST,
    _FIRST_SLUGS,
    _FIT_USUAL,
    _FIT_WEIGHTS,
    _FITS,
    _LAST,
    _LAST_SLUGS,
    _PLANS,
    _REGION_WEIGHTS,
    _REGIONS,
    _STAGE_WEIGHTS,
    _STAGES,
    _ZONES,
    ACCOUNT_COLUMNS,
    CONTACT_COLUMNS,
    CSMS,
    POOLED_CSM,
    _below,
    _between,
    _pick,
    _stamp,
    _utc,
    company,
)


def _arr(rng: random.Random) -> int:
    """About 10% high touch, 20% low touch and 70% tech touch under the sample segments."""
    roll = rng.random()
    if roll < 0.10:
        return _between(rng, 100_000, 640_000, 500)
    if roll < 0.30:
        return _between(rng, 20_000, 100_000, 500)
    return _between(rng, 1_200, 20_000, 100)


def _plan(arr: int) -> tuple[str, int]:
    """Plan name and list price per seat, so seats and ARR tell the same story."""
    return next(((plan, price) for ceiling, plan, price in _PLANS if arr < ceiling), _ENTERPRISE)


def _segment(arr: int) -> str:
    return "high_touch" if arr >= 100_000 else "low_touch" if arr >= 20_000 else "tech_touch"


def _age_days(rng: random.Random) -> int:
    """Days since signup: 5% signed up this week, 12% in the last two months, the rest older."""
    roll = rng.random()
    if roll < 0.05:
        return _between(rng, 0, 7)
    if roll < 0.17:
        return _between(rng, 7, 60)
    return _between(rng, 60, 1_500)


def _stage(rng: random.Random, age: int) -> str:
    if age < 7:
        return "onboarding"
    if age < 60:
        return "onboarding" if rng.random() < 0.7 else "adopted"
    return _pick(rng, _STAGES, _STAGE_WEIGHTS)


def _renewal(rng: random.Random, today: date, age: int, churned: bool) -> date:
    """Yearly terms from signup; some renewals overdue (in negotiation), churned ones lapsed."""
    if churned:
        return today - timedelta(days=_between(rng, 5, 200))
    if age < 365:
        return today + timedelta(days=365 - age)
    roll = rng.random()
    if roll < 0.07:
        return today - timedelta(days=_between(rng, 1, 31))
    if roll < 0.11:
        return today + timedelta(days=_between(rng, 366, 400))  # co-termed 13-month contracts
    return today + timedelta(days=365 - age % 365)


def _last_login(rng: random.Random, now: datetime, age: int, stage: str, churned: bool) -> str:
    """About a quarter of accounts have not logged in for over a week; brand-new ones may never have."""
    if churned:
        return _stamp(now - timedelta(seconds=_between(rng, 40 * _DAY, 300 * _DAY)))
    if age < 7:
        if rng.random() < 0.3:
            return ""
        return _stamp(now - timedelta(seconds=_between(rng, 600, (age + 1) * _DAY)))
    stale = rng.random() < (0.6 if stage == "at_risk" else 0.17)
    low, high = (7 * _DAY + 3_600, 90 * _DAY) if stale else (300, 7 * _DAY - 3_600)
    return _stamp(now - timedelta(seconds=_between(rng, low, high)))


def _escalations(rng: random.Random, segment: str) -> int:
    """Mostly none; bigger accounts file more tickets, so they escalate more often."""
    chance = {"high_touch": 0.35, "low_touch": 0.2}.get(segment, 0.1)
    if rng.random() >= chance:
        return 0
    return 1 if rng.random() < 0.7 else _between(rng, 2, 5)


def _nps(rng: random.Random, stage: str) -> str:
    """Empty for accounts that never answered; at-risk accounts lean toward detractors."""
    if rng.random() < 0.55:
        return ""
    low = 0 if stage == "at_risk" else 3
    high = 8 if stage == "at_risk" else 10
    return str(max(_between(rng, low, high + 1), _between(rng, low, high + 1)))


def _status(index: int, churned: bool) -> str:
    # the third account has cancelled (still in its term), so every sample has each status the
    # shipped config's exit_when names
    return "cancelled" if index == 2 else "churned" if churned else "active"


def _health(rng: random.Random, stage: str, churned: bool) -> int:
    if churned or stage == "at_risk":
        return _between(rng, 10, 51)
    low, high = {"onboarding": (40, 80), "expanding": (70, 98)}.get(stage, (55, 92))
    return _between(rng, low, high + 1)


def _seats(rng: random.Random, arr: int, price: int, stage: str) -> tuple[int, int]:
    """(purchased, used); about a fifth use less than half of what they bought."""
    purchased = max(3, round(arr / price))
    gap = rng.random() < (0.5 if stage == "onboarding" else 0.22)
    share = rng.uniform(0.1, 0.49) if gap else rng.uniform(0.5, 1.0)
    return purchased, max(1, int(purchased * share))


def _usage_fit(rng: random.Random, segment: str, stage: str) -> str:
    """The CSM's judgement: does the account use us the way that brings it value? Tech-touch accounts
    have no named CSM to judge, and some judgements are still to be made. It is drawn apart from
    utilization on purpose: a busy account can still be a poor fit (green outside, red inside)."""
    if segment == "tech_touch" or rng.random() < 0.15:
        return ""
    return _pick(rng, _FITS, _FIT_WEIGHTS.get(stage, _FIT_USUAL))


def _utilization(used: int, purchased: int) -> int:
    return (used * 200 + purchased) // (2 * purchased)  # percent, rounded half up


@dataclass
class _Firm:
    """What an account's contacts share: its mail domain and address style, region, size."""

    account_id: str
    domain: str
    segment: str
    zones: tuple[str, ...]
    pattern: int  # one address convention per company (first.last, flast, first)
    taken: set[str] = field(default_factory=set)


def _account(rng: random.Random, index: int, now: datetime, seed: int,
             fits: random.Random) -> tuple[dict[str, str], _Firm]:
    today = now.date()
    arr = _arr(rng)
    plan, price = _plan(arr)
    segment = _segment(arr)
    age = _age_days(rng)
    stage = _stage(rng, age)
    churned = age >= 60 and rng.random() < 0.04
    purchased, used = _seats(rng, arr, price, stage)
    name, domain = company(index, seed)
    row = {
        "id": f"ACC-{index + 1:06d}",
        "name": name,
        "annual_revenue": str(arr),
        "plan": plan,
        "lifecycle_stage": "at_risk" if churned else stage,
        "status": _status(index, churned),
        "renewal_date": _renewal(rng, today, age, churned).isoformat(),
        "last_login_at": _last_login(rng, now, age, stage, churned),
        "open_escalations": str(0 if churned else _escalations(rng, segment)),
        "nps": _nps(rng, stage),
        "health": str(_health(rng, stage, churned)),
        "csm_email": POOLED_CSM if segment == "tech_touch" else CSMS[_below(rng, len(CSMS))],
        "seats_purchased": str(purchased),
        "seats_used": str(used),
        "seat_utilization": str(_utilization(used, purchased)),
        "signup_date": (today - timedelta(days=age)).isoformat(),
        "region": _pick(rng, _REGIONS, _REGION_WEIGHTS),
    }
    row["usage_fit"] = _usage_fit(fits, segment, row["lifecycle_stage"])
    return row, _Firm(row["id"], domain, segment, _ZONES[row["region"]], _below(rng, 3))


def _roles(rng: random.Random, segment: str) -> list[str]:
    """The first contact administers the account; next usually a champion, then users or billing."""
    low, high = {"high_touch": (3, 4), "low_touch": (2, 4)}.get(segment, (1, 3))
    count = _between(rng, low, high + 1)
    roles = ["admin"]
    if count > 1:
        roles.append("champion" if rng.random() < 0.8 else "user")
    roles += ["billing" if rng.random() < 0.35 else "user" for _ in range(count - len(roles))]
    return roles


def _mailbox(firm: _Firm, first: int, last: int) -> str:
    parts = (_FIRST_SLUGS[first], _LAST_SLUGS[last])
    local = (f"{parts[0]}.{parts[1]}", f"{parts[0][0]}{parts[1]}", parts[0])[firm.pattern]
    return _unique(local, firm)


def _unique(local: str, firm: _Firm) -> str:
    email, n = f"{local}@{firm.domain}", 2
    while email in firm.taken:
        email, n = f"{local}{n}@{firm.domain}", n + 1
    firm.taken.add(email)
    return email


def _contacts(rng: random.Random, firm: _Firm) -> list[dict[str, str]]:
    marks_primary = rng.random() < 0.85  # otherwise the engine falls back to the first admin
    people = [_contact(rng, firm, role, position) for position, role in enumerate(_roles(rng, firm.segment))]
    if marks_primary:
        people[0]["is_primary"] = "true"
    return people


def _contact(rng: random.Random, firm: _Firm, role: str, position: int) -> dict[str, str]:
    """One person; shared billing inboxes have no name, some people have no known time zone."""
    first, last = _below(rng, len(_FIRST)), _below(rng, len(_LAST))
    shared = role == "billing" and rng.random() < 0.4
    leave_chance = 0.0 if position == 0 else (0.1 if role == "champion" else 0.05)
    return {
        "account_id": firm.account_id,
        "email": _unique("billing", firm) if shared else _mailbox(firm, first, last),
        "first_name": "" if shared else _FIRST[first],
        "last_name": "" if shared else _LAST[last],
        "role": role,
        "timezone": "" if rng.random() < 0.05 else firm.zones[_below(rng, len(firm.zones))],
        "status": "left" if rng.random() < leave_chance else "active",
        "is_primary": "false",
    }


Row = dict[str, str]


def iter_rows(n_accounts: int, now: datetime, seed: int = 7) -> Iterator[tuple[Row, list[Row]]]:
    """(account row, its contact rows) for each account, lazily, in id order."""
    if n_accounts < 0:
        raise ValueError(f"n_accounts must be 0 or more, got {n_accounts}")
    moment = _utc(now).replace(microsecond=0)
    rng = random.Random(seed)  # one stream drawn in row order: row k never depends on n
    fits = random.Random(seed + 1_000_003)  # a stream of its own: adding the column moved no other value
    for index in range(n_accounts):
        account, firm = _account(rng, index, moment, seed, fits)
        yield account, _contacts(rng, firm)


def iter_accounts(n_accounts: int, now: datetime, seed: int = 7) -> Iterator[dict[str, str]]:
    return (account for account, _ in iter_rows(n_accounts, now, seed))


def iter_contacts(n_accounts: int, now: datetime, seed: int = 7) -> Iterator[dict[str, str]]:
    return (person for _, people in iter_rows(n_accounts, now, seed) for person in people)


def generate(n_accounts: int, now: datetime, seed: int = 7) -> tuple[list[Row], list[Row]]:
    """Account rows and contact rows, all values CSV text."""
    accounts: list[dict[str, str]] = []
    contacts: list[dict[str, str]] = []
    for account, people in iter_rows(n_accounts, now, seed):
        accounts.append(account)
        contacts.extend(people)
    return accounts, contacts


def write_csv(path: Path, rows: Iterable[Row], columns: Iterable[str] | None = None) -> int:
    """Write rows (any iterable, consumed once) under a header; return how many were written.

    The header is `columns`, else the first row's keys; a missing cell is written empty.
    """
    it = iter(rows)
    first = next(it, None)
    header = tuple(columns) if columns is not None else tuple(first or ())
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        if first is None:
            return 0
        writer.writerow([first.get(c, "") for c in header])
        return 1 + _write_rows(writer, it, header)


def _write_rows(writer: Any, rows: Iterable[Row], header: tuple[str, ...]) -> int:
    """csv.DictWriter re-checks every row's keys; a plain writer is about twice as fast."""
    count = 0
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
        count += 1
    return count


def write_sample(directory: Path, n_accounts: int, now: datetime, seed: int = 7) -> tuple[Path, Path]:
    """Write accounts.csv and contacts.csv in one pass over the generator."""
    directory.mkdir(parents=True, exist_ok=True)
    accounts_path, contacts_path = directory / "accounts.csv", directory / "contacts.csv"
    with contacts_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CONTACT_COLUMNS)

        def accounts() -> Iterator[Row]:
            for account, people in iter_rows(n_accounts, now, seed):
                _write_rows(writer, people, CONTACT_COLUMNS)
                yield account

        write_csv(accounts_path, accounts(), ACCOUNT_COLUMNS)
    return accounts_path, contacts_path


def main(argv: list[str] | None = None) -> int:
    """python -m playbookd.cli.sampledata DIR [N_ACCOUNTS] [NOW_ISO] [SEED]"""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 4:
        print(main.__doc__, file=sys.stderr)
        return 2
    count = int(args[1]) if len(args) > 1 else 300
    now = datetime.fromisoformat(args[2].replace("Z", "+00:00")) if len(args) > 2 else datetime.now(UTC)
    paths = write_sample(Path(args[0]), count, now, int(args[3]) if len(args) > 3 else 7)
    print(" ".join(str(p) for p in paths))
    return 0


__all__ = ["generate", "iter_accounts", "iter_contacts", "iter_rows", "write_csv",
           "write_sample"]

if __name__ == "__main__":
    raise SystemExit(main())
