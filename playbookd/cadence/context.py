"""What a step runs with: the enrollment, its account and event, and the context templates see."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import is_
from typing import Any

from sqlalchemy import Connection, Row

from playbookd.delivery.recipients import Contact
from playbookd.model.account import INTERNAL, AccountRecord
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store import audit
from playbookd.templates.compiled import Rendered
from playbookd.templates.errors import TemplateError

_PLAIN = (str, int, bool, type(None))  # equal values of one of these types print alike


def same(a: Any, b: Any) -> bool:
    """Whether two contexts (or accounts) render alike: equal, and equal in type all the way down,
    because `==` says 1 == 1.0 == True and a template prints `1`, `1.0` and `True`. Other values
    (dates, decimals, floats) must also print alike: Decimal("1.0") == Decimal("1.00"), a time in two
    zones can be one instant, and 0.0 == -0.0."""
    if a is b:
        return True  # one object prints one way (a NaN too, though it is not equal to itself)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return False
        # a copy of a dict nothing changed since holds the very same values, in the same order
        return all(map(is_, a.values(), b.values())) or all(_same_value(value, b[key]) for key, value in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, _PLAIN):
        return bool(a == b)
    return bool(a == b) and repr(a) == repr(b)


def _same_value(a: Any, b: Any) -> bool:
    # most values of a context are text or None: compared here without a call of `same` each
    if a is b:
        return True
    if type(a) is str or a is None:
        return type(b) is type(a) and bool(a == b)
    return same(a, b)


@dataclass(frozen=True)
class Ahead:
    """An email rendered ahead of its step: its unsubscribe URL, the result, and the account it was
    rendered for (a copy: a `set` step before the email changes the account, and then the context)."""

    url: str
    account: Mapping[str, Any]
    result: Rendered | TemplateError


# What an email is rendered from: template, segment and the whole template context (account,
# contact, event, unsubscribe URL and so the secret); two equal jobs render the same email.
Job = tuple[str, str, dict[str, Any]]
Key = tuple[int, int, int]  # enrollment, step, contact


@dataclass(frozen=True)
class Early:
    """An email rendered before its batch's transaction began (cadence.advance on SQLite), from the
    store as read then: `stand` is where its enrollment stood (step, step key, group, event), and the
    rest what its job was built from (the job is a function of them and of the runtime, fixed for
    the run). The transaction takes it only for an enrollment standing there still, with the same
    template, secret, account, contact and event (cadence.batch.prepare): then its job would be
    the same, so it is neither built again nor compared."""

    stand: tuple[Any, ...]
    template: str
    secret: bytes
    account: Mapping[str, Any]  # the record as read then, whole
    contact: Mapping[str, Any]  # the contact's context as read then
    event: Mapping[str, Any] | None
    url: str
    result: Rendered | TemplateError


@dataclass
class Batch:
    """What the enrollments advanced in one transaction share, read or rendered for all of them at once:
    each account's contacts, suppressions by category, and emails rendered ahead of their turn. A step
    uses an email rendered ahead only for the same enrollment, step and contact and an account equal to
    the one it was rendered for (the rest of the context is fixed for the transaction); anything else it
    reads or renders itself, as without a batch."""

    contacts: dict[str, list[Contact]] = field(default_factory=dict)
    suppressed: dict[str, tuple[frozenset[str], dict[str, str]]] = field(default_factory=dict)
    ahead: dict[Key, Ahead] = field(default_factory=dict)
    # Written together when the transaction ends (cadence.batch.write), or earlier when something is
    # about to read them back (a step's `when:` counts the enrollment's emails)
    queued: list[dict[str, Any]] = field(default_factory=list)  # outbox rows
    moves: list[dict[str, Any]] = field(default_factory=list)  # enrollments gone on to a later step

    def take(self, enrollment: int, step: int, contact: int, account: Mapping[str, Any]) -> tuple[str, Rendered] | None:
        """The unsubscribe URL and email rendered ahead for this enrollment, step and contact (its
        TemplateError raised), else None."""
        found = self.ahead.pop((enrollment, step, contact), None)
        if found is None or not same(found.account, account):
            return None
        if isinstance(found.result, TemplateError):
            raise found.result
        return found.url, found.result

    def suppressions(self, emails: Iterable[str], category: str) -> dict[str, str] | None:
        """email -> reason for addresses read ahead for `category`; None when one was not read."""
        asked, reasons = self.suppressed.get(category, (frozenset(), {}))
        wanted = list(emails)
        if not asked.issuperset(wanted):
            return None
        return {e: reasons[e] for e in wanted if e in reasons}


@dataclass
class StepContext:
    runtime: Runtime
    conn: Connection
    enrollment: Row[Any]
    playbook: Playbook
    account: AccountRecord
    now: datetime
    secret: bytes
    event: dict[str, Any] | None = None
    batch: Batch | None = None

    def context(self, contact: dict[str, Any] | None, unsubscribe: str) -> dict[str, Any]:
        return template_context(self.runtime, self.playbook, self.account, contact, unsubscribe, self.event)

    def inline_context(self) -> dict[str, Any]:
        """What a task title, a webhook body and a `set` value see: the account's context and `now`."""
        return {**self.context(None, ""), "now": self.now.isoformat()}

    def log(self, event: str, step: int | None, reason: str | None = None, **kw: Any) -> None:
        audit.record(self.conn, event, account_id=self.account["id"], playbook_id=self.playbook.id,
                     enrollment_id=self.enrollment.id, step=step, reason=reason, at=self.now, **kw)


def csm(account: AccountRecord, company: str) -> dict[str, Any]:
    email = account.get("csm_email")
    if not email:
        return {"name": f"The {company} Success team", "email": None}
    name = account.get("csm_name") or " ".join(p.capitalize() for p in email.split("@")[0].replace("_", ".").split("."))
    return {"name": name, "email": email}


def template_context(runtime: Runtime, playbook: Playbook, account: AccountRecord,
                     contact: dict[str, Any] | None, unsubscribe: str,
                     event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every key a template may use; unknown values are None, never missing. `event` in event playbooks."""
    fields = {name: None for name in runtime.types}
    fields.update({k: v for k, v in account.items() if k not in INTERNAL})
    company = runtime.config.company
    person = {name: None for name in runtime.contact_types if name != "account_id"} if contact else {}
    person.update(contact or {})
    return {
        "account": fields, "contact": person, "segment": account.get("segment"),
        "playbook": {"id": playbook.id, "name": playbook.name, "category": playbook.category},
        "csm": csm(account, company.name), "company": company.model_dump(),
        "unsubscribe_url": unsubscribe, **({"event": event} if event is not None else {}),
    }
