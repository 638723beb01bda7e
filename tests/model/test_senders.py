"""`from:` resolution: a CSM's address and name come from synced data, so they go through the same
canonical form as contacts' addresses (model.addresses) and the same one-line cap as every header
value from data (model.headers)."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from playbookd.model import senders

FROM = "Acme Success <success@acme.example>"


def resolve(account: dict[str, str], name: str = "Maria", spec: str = senders.CSM,
            domains: tuple[str, ...] = ("acme.example",), limit: int = 200) -> senders.Sender:
    return senders.resolve(spec, account, name, FROM, None, domains, limit)


def test_a_csm_address_from_data_is_made_canonical_before_its_domain_is_compared() -> None:
    sender = resolve({"csm_email": "  Maria@ACME.Example "})
    assert (sender.how, sender.from_addr) == ("csm", "Maria <maria@acme.example>")
    idna = resolve({"csm_email": "jo@Bücher.example"}, domains=("BÜCHER.example",))
    assert (idna.how, idna.from_addr) == ("csm", "Maria <jo@xn--bcher-kva.example>")


@pytest.mark.parametrize("hostile", [
    "maria@acme.example, boss@acme.example",  # two recipients where one sender goes
    "maria@acme.example\r\nBcc: all@evil.example",
    "Maria <maria@acme.example>",  # a name and brackets where an address goes: refused as for contacts
    "maria@localhost",
    "not an address",
])
def test_a_csm_address_that_is_not_one_mailbox_falls_back_to_the_configured_sender(hostile: str) -> None:
    sender = resolve({"csm_email": hostile})
    assert (sender.how, sender.from_addr, sender.headers()) == ("csm_missing", FROM, {"From": FROM, "Reply-To": ""})


def test_a_csm_name_from_data_is_one_line_capped_and_quoted() -> None:
    sender = resolve({"csm_email": "maria@acme.example"}, name='Ma"ria\r\nBcc: x@evil.example\u2028' + "x" * 500,
                     limit=40)
    assert sender.cut
    message = EmailMessage(policy=SMTP)
    message["From"] = sender.from_addr
    parsed: Address = message["From"].addresses[0]
    assert parsed.addr_spec == "maria@acme.example" and "\n" not in parsed.display_name
    assert parsed.display_name.startswith('Ma"ria Bcc: x@evil.example x') and len(parsed.display_name) <= 40
    assert message["Bcc"] is None


def test_an_address_outside_the_sending_domains_becomes_the_reply_to() -> None:
    sender = resolve({"csm_email": "dana@Partner.example"}, name="Dana")
    assert (sender.how, sender.from_addr, sender.reply_to) == ("csm_reply_to", FROM, "Dana <dana@partner.example>")
    written = resolve({}, spec="Events <EVENTS@partner.example>", domains=("partner.example",))
    assert (written.how, written.from_addr, written.reply_to) == ("address", "Events <events@partner.example>", None)


def test_from_is_checked_as_an_address() -> None:
    assert senders.sender_problem("csm") is None and senders.sender_problem("Dana <dana@acme.example>") is None
    for bad in ("CSM", "x@", "a@b.example, c@d.example", "", 3):
        assert senders.sender_problem(bad) is not None, bad
