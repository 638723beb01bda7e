"""An email rendered for one account and contact as it would be sent: `playbookd preview`, `send-test
--template` and the console's template page."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from playbookd.cadence.context import template_context
from playbookd.delivery.recipients import load_contacts, primary
from playbookd.delivery.unsubscribe import resolve_secret, sign, unsubscribe_url
from playbookd.errors import UserError, Where
from playbookd.model.addresses import lookup_form
from playbookd.model.conditions import TRUE
from playbookd.model.steps import Playbook
from playbookd.runtime import Runtime
from playbookd.store.accounts import get_account, load_account_types
from playbookd.store.database import transaction


def _preview_playbook() -> Playbook:
    return Playbook("preview", "Preview", "", "live", "general", 0, None, None, TRUE, None, None, (), None,
                    Where("", None, None))


def render_for(rt: Runtime, engine: Engine, template: str, account_id: str, contact_email: str | None,
               segment: str | None = None) -> tuple[Any, str]:
    """(the Rendered email, the recipient). `segment` picks another segment's version of the template
    (its folder, and `segment` in the context) for the same account."""
    with transaction(engine) as conn:
        account = get_account(conn, account_id, load_account_types(conn))
        if account is None:
            raise UserError(f"account {account_id!r} is not in the store (run `playbookd sync` first?)")
        people = load_contacts(conn, [account_id])[account_id]
        secret = resolve_secret(conn, rt.config.delivery.unsubscribe_secret)
    contact = primary(people) if contact_email is None else next(
        (c for c in people if c.email == lookup_form(contact_email)), None)
    if contact is None:
        known = ", ".join(c.email for c in people) or "none"
        raise UserError(f"no such contact for account {account_id} (contacts: {known})")
    if segment is not None:
        if segment not in rt.config.segment_names:
            raise UserError(f"no segment {segment!r}; known: {', '.join(rt.config.segment_names)}")
        account = {**account, "segment": segment}
    url = unsubscribe_url(rt.config.company.public_url, sign(secret, contact.email, "general"))
    context = template_context(rt, _preview_playbook(), account, contact.context(), url)
    return rt.templates.render(template, account["segment"], context), contact.email
