"""Who an email is from: `from:` in a template's front matter or on an email step, an address or
`csm` (the account's CSM). An address becomes the From only when its domain is one the company
sends for (`delivery.sender_domains`); any other becomes the Reply-To, and From stays
`delivery.from`, so DMARC alignment is never broken by a CSM's own domain."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any

from playbookd.model.addresses import canonical_or_none
from playbookd.model.headers import header_value

CSM = "csm"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def address_of(text: str) -> str | None:
    """The canonical address in `text` (`Name <a@b.example>` or `a@b.example`, see model.addresses),
    None if it is not one. A CSM's address comes from synced data: hostile input, checked as a contact's is."""
    if _CONTROL.search(text):
        return None
    _, address = parseaddr(text)
    return canonical_or_none(address) if address else None


def sender_problem(value: Any) -> str | None:
    """Why `value` cannot be a `from:`, else None."""
    if not isinstance(value, str) or not value.strip():
        return "'from' is csm or an email address, e.g. \"Dana Scully <dana@acme.example>\""
    if value.strip() == CSM or address_of(value.strip()):
        return None
    return f"'from' is csm or an email address, got {value!r}"


def domain_of(text: str) -> str:
    address = address_of(text) or ""
    return address.rpartition("@")[2]


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
        address = address_of(str(account.get("csm_email") or ""))
        if address is None:
            return Sender(default_from, default_reply_to, "csm_missing")
        (person, cut), how = mailbox(csm_name, address, limit), CSM
    else:
        name, _ = parseaddr(spec)
        address = address_of(spec)
        assert address is not None, f"from: {spec!r} passed validation"  # checked by sender_problem
        (person, cut), how = mailbox(name or None, address, limit), "address"
    if domain_of(person) in {canonical_domain(d) for d in domains}:
        return Sender(person, None, how, cut)  # replies go to From: that person
    return Sender(default_from, person, f"{how}_reply_to", cut)
