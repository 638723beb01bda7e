"""Building the MIME message of an outbox row: headers, one-click unsubscribe, text and HTML parts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

# Long unbreakable headers (List-Unsubscribe URLs) must stay readable, not RFC 2047-encoded.
POLICY = policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Outgoing:
    message_id: str
    from_addr: str
    to_addr: str
    subject: str
    html: str
    text: str
    unsubscribe_url: str | None
    reply_to: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def make_message_id(key: str, domain: str, installation: bytes = b"") -> str:
    """Derived from the outbox key, so a resend after a crash carries the same Message-ID, and from
    the installation's secret, so two installations never give different emails the same one."""
    digest = hashlib.sha256(installation + b"\x1f" + key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_message(out: Outgoing, now: datetime | None = None) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["Message-ID"] = out.message_id
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["From"] = out.from_addr
    message["To"] = out.to_addr
    message["Subject"] = out.subject
    if out.reply_to:
        message["Reply-To"] = out.reply_to
    if out.unsubscribe_url:
        # RFC 8058 one-click: mailbox providers show an unsubscribe button and POST to the URL.
        message["List-Unsubscribe"] = f"<{out.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in out.extra_headers.items():
        message[name] = value
    message.set_content(out.text)
    message.add_alternative(out.html, subtype="html")
    return message


def envelope(message: EmailMessage) -> tuple[str, str]:
    return parseaddr(str(message["From"]))[1], parseaddr(str(message["To"]))[1]
