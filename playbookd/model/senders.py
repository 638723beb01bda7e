"""Who an email is from: `from:` in a template's front matter or on an email step, an address or
`csm` (the account's CSM). An address becomes the From only when its domain is one the company
sends for (`delivery.sender_domains`); any other becomes the Reply-To, and From stays
`delivery.from`, so DMARC alignment is never broken by a CSM's own domain."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import getaddresses
from typing import Any

from playbookd.model.addresses import canonical_or_none
from playbookd.model.headers import header_value

CSM = "csm"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _named(text: str) -> tuple[str, str] | None:
    """(name, canonical address) of one mailbox written `Name <a@b.example>` or `a@b.example`; None
    for anything else (a list, a control character, an address that is not deliverable)."""
    if _CONTROL.search(text):
        return None
    found = getaddresses([text])
    if len(found) != 1 or not found[0][1]:
        return None
    address = canonical_or_none(found[0][1])
    return None if address is None else (found[0][0], address)


def address_of(text: str) -> str | None:
    """The canonical address (model.addresses) of the one mailbox `text` writes, else None."""
    named = _named(text)
    return None if named is None else named[1]


def sender_problem(value: Any) -> str | None:
    """Why `value` cannot be a `from:`, else None."""
    if not isinstance(value, str) or not value.strip():
        return "'from' is csm or an email address, e.g. \"Dana Scully <dana@acme.example>\""
    if value.strip() == CSM or address_of(value.strip()):
        return None
    return f"'from' is csm or an email address, got {value!r}"


def canonical_domain(domain: str) -> str:
    """A configured sending domain in the form canonical addresses carry (lowercase, IDNA)."""
    found = canonical_or_none(f"postmaster@{domain.strip()}")
    return found.rpartition("@")[2] if found else domain.strip().lower()


@dataclass(frozen=True)
class Sender:
    from_addr: str
    reply_to: str | None
    how: str  # default | address | csm | csm_reply_to | address_reply_to | csm_missing
    cut: bool = False  # the CSM's name was cut at limits.header_chars

    def headers(self) -> dict[str, str]:
        """What the outbox row keeps (none for the configured sender: delivery decides at send time)."""
        return {} if self.how == "default" else {"From": self.from_addr, "Reply-To": self.reply_to or ""}

    def detail(self) -> dict[str, str | None]:
        """For the audit log: who it is from and why, when a `from:` chose it."""
        return {} if self.how == "default" else {"from": self.from_addr, "reply_to": self.reply_to,
                                                 "sender": self.how}


def mailbox(name: str | None, address: str, limit: int) -> tuple[str, bool]:
    """`Name <address>` with `address` canonical, the name made one line and cut at `limit` as every
    header value from data is (model.headers), and quoted as needed; True when the name was cut."""
    clean, cut = header_value(name or "", limit)
    local, _, domain = address.rpartition("@")
    return str(Address(display_name=clean, username=local, domain=domain)), cut


def resolve(spec: str | None, account: Mapping[str, Any], csm_name: str, default_from: str,
            default_reply_to: str | None, domains: Collection[str], limit: int = 200) -> Sender:
    """The From and Reply-To of one email. `spec` None: the configured sender. `csm` without a usable
    `csm_email` on the account falls back to the configured sender (how: csm_missing)."""
    if spec is None:
        return Sender(default_from, default_reply_to, "default")
    if spec == CSM:
        # synced data, so hostile input: an address alone, in its canonical form, as a contact's must be
        address = canonical_or_none(str(account.get("csm_email") or ""))
        if address is None:
            return Sender(default_from, default_reply_to, "csm_missing")
        (person, cut), how = mailbox(csm_name, address, limit), CSM
    else:
        named = _named(spec)
        if named is None:  # sender_problem refused it when the playbook or template was loaded
            return Sender(default_from, default_reply_to, "default")
        address = named[1]
        (person, cut), how = mailbox(named[0] or None, address, limit), "address"
    if address.rpartition("@")[2] in {canonical_domain(d) for d in domains}:
        return Sender(person, None, how, cut)  # replies go to From: that person
    return Sender(default_from, person, f"{how}_reply_to", cut)
