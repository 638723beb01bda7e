"""Who an email step reaches: role selection, then eligibility (active, not suppressed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from playbookd.delivery.forget import hashed
from playbookd.model import evaluation
from playbookd.model.addresses import lookup_form
from playbookd.model.conditions import Condition
from playbookd.store.chunks import chunked
from playbookd.store.people import WELL_KNOWN, contact_types, typed_contact
from playbookd.store.schema import contacts, suppressions

ACTIVE = "active"


@dataclass(frozen=True)
class Contact:
    id: int
    account_id: str
    email: str
    first_name: str | None
    last_name: str | None
    role: str | None
    timezone: str | None
    status: str
    is_primary: bool
    position: int
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False)  # every column, typed

    def context(self) -> dict[str, Any]:
        """What templates see as `contact` and `where:` filters test: every column, extra ones too."""
        return dict(self.fields) or {
            "email": self.email, "first_name": self.first_name, "last_name": self.last_name, "role": self.role,
            "timezone": self.timezone, "status": self.status, "is_primary": self.is_primary}


_COLUMNS = ("id", "account_id", "email", "first_name", "last_name", "role", "timezone", "status", "is_primary",
            "position")


def load_contacts(conn: Connection, account_ids: Iterable[str],
                  types: Mapping[str, str] | None = None) -> dict[str, list[Contact]]:
    """Contacts of each account, in source order, with every column typed."""
    types = contact_types(conn) if types is None else types
    ids = list(set(account_ids))
    found: dict[str, list[Contact]] = {i: [] for i in ids}
    for batch in chunked(ids, 500):
        query = select(*[contacts.c[f] for f in _COLUMNS], contacts.c.data).where(
            contacts.c.account_id.in_(batch)).order_by(contacts.c.account_id, contacts.c.position, contacts.c.id)
        for row in conn.execute(query):
            # by position: a Row's attributes cost a lookup each, a tenth of advancing an email
            values = dict(zip(_COLUMNS, row, strict=False))
            known = {name: values[name] for name in WELL_KNOWN}
            found[values["account_id"]].append(Contact(**values, fields=typed_contact(row[-1], known, types)))
    return found


def primary(people: Sequence[Contact]) -> Contact | None:
    """The contact marked primary, else the first active admin in source order."""
    marked = next((c for c in people if c.is_primary), None)
    if marked is not None:
        return marked
    return next((c for c in people if c.role == "admin" and c.status == ACTIVE), None)


def select_recipients(people: Sequence[Contact], to: Sequence[str]) -> list[Contact]:
    """Contacts named by `to` (all, primary, roles), each once, before eligibility."""
    chosen: dict[int, Contact] = {}
    for spec in to:
        if spec == "all":
            picked: list[Contact] = list(people)
        elif spec == "primary":
            found = primary(people)
            picked = [found] if found else []
        else:
            picked = [c for c in people if c.role == spec]
        chosen.update((c.id, c) for c in picked)
    return sorted(chosen.values(), key=lambda c: (c.position, c.id))


def suppressed_for(conn: Connection, emails: Iterable[str], category: str) -> dict[str, str]:
    """email (as given) -> reason, for addresses suppressed for everything or for `category`; matched
    by their canonical form, as every suppression is stored."""
    forms = {e: lookup_form(e) for e in emails}
    wanted = set(forms.values())
    if not wanted:
        return {}
    forgotten = {hashed(e): e for e in wanted}  # `playbookd forget` keeps only the hash
    query = select(suppressions.c.email, suppressions.c.reason).where(
        suppressions.c.email.in_([*wanted, *forgotten]), suppressions.c.category.in_(["*", category]))
    found = {forgotten.get(row.email, row.email): row.reason for row in conn.execute(query)}
    return {email: found[form] for email, form in forms.items() if form in found}


def ineligible_reason(contact: Contact, suppressed: dict[str, str]) -> str | None:
    """Why this contact gets nothing, or None when it may be emailed."""
    if contact.status != ACTIVE:
        return "departed" if contact.status == "left" else f"contact_{contact.status}"
    reason = suppressed.get(contact.email)
    return reason if reason else None


@dataclass(frozen=True)
class Filter:
    """`to: {role: ..., where: CONDITION}`: only contacts the condition holds for, tested at `now`."""

    where: Condition
    now: datetime
    tz: ZoneInfo

    def keeps(self, contact: Contact) -> bool:
        return evaluation.evaluate(self.where, contact.context(), self.now, self.tz)


def addressed(people: Sequence[Contact], to: Sequence[str], only: Filter | None = None) -> list[Contact]:
    """The contacts one email step addresses, eligible or not."""
    picked = select_recipients(people, to)
    return picked if only is None else [c for c in picked if only.keeps(c)]


Known = Callable[[list[str], str], dict[str, str] | None]  # suppressions read ahead; None: not these


def eligible(conn: Connection, people: Sequence[Contact], to: Sequence[str], category: str,
             only: Filter | None = None, known: Known | None = None) -> tuple[list[Contact], list[tuple[Contact, str]]]:
    """(recipients, [(contact, reason skipped)]) for one email step; contacts `only` rules out are
    neither (the step does not address them)."""
    picked = addressed(people, to, only)
    emails = [c.email for c in picked]
    suppressed = known(emails, category) if known is not None else None
    if suppressed is None:
        suppressed = suppressed_for(conn, emails, category)
    ok: list[Contact] = []
    skipped: list[tuple[Contact, str]] = []
    for contact in picked:
        reason = ineligible_reason(contact, suppressed)
        if reason is None:
            ok.append(contact)
        else:
            skipped.append((contact, reason))
    return ok, skipped
