"""SMTP replies read by their enhanced status codes (RFC 3463)."""

from __future__ import annotations

import pytest

from playbookd.delivery.replies import Verdict, classify

RETRY = Verdict(temporary=True)


@pytest.mark.parametrize(("code", "message", "phase", "verdict"), [
    (550, "5.1.1 No such user", "RCPT", Verdict(False, hard_bounce=True)),
    (550, "5.1.10 Recipient address rejected: domain has no MX", "RCPT", Verdict(False, hard_bounce=True)),
    (550, "5.2.1 Mailbox disabled", "RCPT", Verdict(False, hard_bounce=True)),
    (552, "5.2.2 Mailbox full", "RCPT", Verdict(False)),
    (452, "4.2.2 Mailbox full", "RCPT", Verdict(True, soft_bounce=True)),
    (451, "4.7.1 Greylisted, try again later", "RCPT", RETRY),
    (421, "4.7.0 Too many connections", "RCPT", RETRY),
    (421, "4.2.1 Service not available", "RCPT", RETRY),
    (451, "4.3.0 Local error", "DATA", RETRY),
    (452, "4.2.2 Mailbox full", "MAIL", RETRY),
    (550, "5.7.1 Relaying denied", "RCPT", Verdict(False, policy=True)),
    (554, "5.7.1 Message rejected as spam", "DATA", Verdict(False, policy=True)),
    (550, "User unknown in virtual mailbox table", "RCPT", Verdict(False, hard_bounce=True)),
    (550, "Requested action not taken: mailbox unavailable", "RCPT", Verdict(False, hard_bounce=True)),
    (550, "Administrative prohibition", "RCPT", Verdict(False)),
    (554, "Transaction failed", "DATA", Verdict(False)),
    (450, "Requested mail action not taken", "RCPT", RETRY),
])
def test_each_class_of_reply(code: int, message: str, phase: str, verdict: Verdict) -> None:
    assert classify(code, message, phase) == verdict
