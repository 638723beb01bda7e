"""What an SMTP refusal says about the recipient, read by its enhanced status code (RFC 3463).

Only a bad mailbox or domain (5.1.x) or a disabled mailbox (5.2.1) is a hard bounce, and only a
recipient-specific temporary reply (4.2.x: mailbox full, over quota) is a soft bounce. Greylisting
and rate limits (4.7.x, 421) are the server's policy: retried, never a bounce. 5.7.x is a refusal
of the message or of our own setup (relaying denied, SPF, DKIM): the message fails, the contact is
not suppressed, and every message will hit it, so it is raised as a policy refusal. Without an
enhanced code, only a 550/551/553 whose text says the user is unknown is a hard bounce; anything
ambiguous is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNKNOWN_USER = re.compile(r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
                          r"unknown recipient|recipient unknown|invalid (recipient|mailbox)|mailbox unavailable|"
                          r"address rejected", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    temporary: bool
    hard_bounce: bool = False  # the mailbox does not exist: suppress the address
    soft_bounce: bool = False  # a recipient-specific temporary problem: three in a row suppress
    policy: bool = False  # the server refuses our mail or setup (5.7.x): nothing to do with the recipient


def enhanced(message: str) -> tuple[int, int, int] | None:
    match = _ENHANCED.match(message)
    return None if match is None else (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def classify(code: int, message: str, phase: str) -> Verdict:
    """The meaning of `code message`, replied to RCPT, DATA or another command."""
    about_recipient = phase in ("RCPT", "DATA")
    status = enhanced(message)
    if 400 <= code < 500:
        recipient_trouble = status is not None and status[1] == 2 and code != 421
        return Verdict(temporary=True, soft_bounce=about_recipient and recipient_trouble)
    if status is not None:
        bad_mailbox = status[1] == 1 or status[1:] == (2, 1)
        return Verdict(temporary=False, hard_bounce=about_recipient and bad_mailbox, policy=status[1] == 7)
    unknown = phase == "RCPT" and code in (550, 551, 553) and _UNKNOWN_USER.search(message) is not None
    return Verdict(temporary=False, hard_bounce=unknown)
