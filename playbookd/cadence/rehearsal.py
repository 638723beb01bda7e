"""A rehearsal before going live: every email a playbook sends, rendered for up to REHEARSED real
accounts of each segment (with their primary contact), so a template that only breaks on real
data (a value of an unexpected kind, a division by a zero count) fails `validate`, not a send."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Engine

from playbookd.cadence.context import template_context
from playbookd.delivery.recipients import load_contacts, primary
from playbookd.errors import Problem
from playbookd.model.account import AccountRecord, decode_account
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store.accounts import RECORD, load_account_types
from playbookd.store.schema import accounts
from playbookd.templates.errors import TemplateError

REHEARSED = 50  # accounts of each segment


def _accounts(engine: Engine, segment: str) -> list[AccountRecord]:
    with engine.connect() as conn:
        types = load_account_types(conn)
        rows = conn.execute(select(*RECORD).where(accounts.c.segment == segment).order_by(accounts.c.id)
                            .limit(REHEARSED)).all()
    return [decode_account(r.id, r.segment, r.data, r.changes, types) for r in rows]


def _uses(runtime: Runtime) -> dict[str, Playbook]:
    """Each template name with a state-triggered playbook that sends it (event ones need their event)."""
    found: dict[str, Playbook] = {}
    for playbook in runtime.playbooks:
        if playbook.event is None:
            for name, _ in playbook.templates():
                found.setdefault(name, playbook)
    return found


def _failures(runtime: Runtime, engine: Engine, segment: str) -> Iterator[tuple[Problem, str]]:
    records = _accounts(engine, segment)
    with engine.connect() as conn:
        people = load_contacts(conn, [r["id"] for r in records])
    for name, playbook in sorted(_uses(runtime).items()):
        for record in records:
            contact = primary(people.get(record["id"], []))
            context = template_context(runtime, playbook, record, contact.context() if contact else None,
                                       f"{runtime.config.company.public_url}/unsubscribe/rehearsal")
            try:
                runtime.templates.render(name, segment, context)
            except TemplateError as exc:
                yield exc.problem, record["id"]


def rehearse(runtime: Runtime, engine: Engine) -> list[Problem]:
    """One problem per failing template line, naming the first account it fails for and how many more."""
    first: dict[Problem, list[str]] = {}
    for segment in runtime.config.segment_names:
        for problem, account in _failures(runtime, engine, segment):
            first.setdefault(problem, []).append(account)
    return [_naming(problem, ids) for problem, ids in first.items()]


def _naming(problem: Problem, accounts: list[str]) -> Problem:
    more = f" (and {len(accounts) - 1} more)" if len(accounts) > 1 else ""
    return Problem(problem.file, problem.line, problem.col, f"for account {accounts[0]}{more}: {problem.message}")
