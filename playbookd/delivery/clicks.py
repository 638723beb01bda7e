"""Click signals without pixels: links go through a signed redirect that records who followed them.

A token signs (message key, link number, URL) with the installation secret, so the redirect can
only ever send someone to a URL one of our emails contained: an altered token is refused, never
followed (no open redirect). Mail scanners fetch every link of a message as it arrives, so a
HEAD, a known scanner's user agent or a fetch within `delivery.scan_seconds` of delivery is
recorded as `scanned` and never counts as a click.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from playbookd.delivery.unsubscribe import b64url, unb64url
from playbookd.store import audit
from playbookd.store.database import aware, insert_ignore
from playbookd.store.schema import clicks, outbox

CLICKED, SCANNED = "clicked", "scanned"
LINK_SCANNED = "link_scanned"
# Security gateways and link previewers that fetch every URL of a message as it arrives
SCANNER_AGENTS = re.compile(
    r"barracuda|mimecast|proofpoint|safelinks|symantec|messagelabs|trendmicro|forcepoint|fortiguard|"
    r"cisco|ironport|sophos|zscaler|bitdefender|googleimageproxy|slackbot|linkedinbot|facebookexternalhit|"
    r"bingpreview|skypeuripreview|microsoft office|ms-office|python-requests|curl/|wget/|headless",
    re.IGNORECASE)
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
_TRAILING = ".,;:!?"


def sign(secret: bytes, key: str, link: int, url: str) -> str:
    payload = b64url(json.dumps(["c", key, link, url], separators=(",", ":")).encode())
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{b64url(mac)}"


def verify(secret: bytes, token: str) -> tuple[str, int, str] | None:
    """(message key, link number, URL) of a genuine token; None for anything forged or altered."""
    try:
        payload, mac = token.split(".", 1)
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(expected, unb64url(mac)):
            return None
        tag, key, link, url = json.loads(unb64url(payload))
    except (ValueError, TypeError):
        return None
    if tag != "c" or not isinstance(key, str) or not isinstance(link, int) or not isinstance(url, str):
        return None
    return key, link, url


@dataclass
class Rewriter:
    """Rewrites the http(s) links of one message; the same URL in the HTML and the text is one link."""

    secret: bytes
    public_url: str
    key: str
    keep: tuple[str, ...]  # URL prefixes left alone: the unsubscribe link and our own redirects

    def __post_init__(self) -> None:
        self.links: list[str] = []

    def _tracked(self, url: str) -> str:
        if not url.lower().startswith(("http://", "https://")) or url.startswith(self.keep):
            return url
        if url not in self.links:
            self.links.append(url)
        return f"{self.public_url.rstrip('/')}/c/{sign(self.secret, self.key, self.links.index(url), url)}"

    def html(self, body: str) -> str:
        def href(match: re.Match[str]) -> str:
            url = html.unescape(match.group(3)).strip()
            return f"{match.group(1)}{match.group(2)}{html.escape(self._tracked(url))}{match.group(2)}"
        return _HREF.sub(href, body)

    def text(self, body: str) -> str:
        def bare(match: re.Match[str]) -> str:
            url = match.group(0)
            core = url.rstrip(_TRAILING)
            return self._tracked(core) + url[len(core):]
        return _TEXT_URL.sub(bare, body)


def classify(method: str, agent: str, sent_at: datetime | None, now: datetime, scan_seconds: float) -> str | None:
    """Why a fetch is a scanner's (head, scanner_agent, too_soon), or None for a person's click."""
    if method == "HEAD":
        return "head"
    if not agent or SCANNER_AGENTS.search(agent):
        return "scanner_agent"
    sent = aware(sent_at)
    if sent is None or (now - sent).total_seconds() < scan_seconds:
        return "too_soon"
    return None


def record(conn: Connection, key: str, link: int, url: str, method: str, agent: str, now: datetime,
           scan_seconds: float) -> str | None:
    """Store the fetch (once per message, link and kind); its kind, or None when the message is no
    longer in the store (forgotten): the redirect still goes, as the token is genuine."""
    row = conn.execute(select(outbox).where(outbox.c.key == key)).first()
    if row is None:
        return None
    reason = classify(method, agent, row.sent_at, now, scan_seconds)
    kind = SCANNED if reason else CLICKED
    added = insert_ignore(conn, clicks, [{
        "message_key": key, "link": link, "url": url, "kind": kind, "reason": reason or "click",
        "enrollment_id": row.enrollment_id, "playbook_id": row.playbook_id, "account_id": row.account_id,
        "contact": row.to_addr, "at": now}])
    if added:
        audit.record(conn, CLICKED if kind == CLICKED else LINK_SCANNED, account_id=row.account_id,
                     playbook_id=row.playbook_id, enrollment_id=row.enrollment_id, contact=row.to_addr,
                     reason=reason, at=now, detail={"link": link, "url": url, "template": row.template})
    return kind


def clicked_enrollments(conn: Connection, ids: list[int]) -> set[int]:
    query = select(clicks.c.enrollment_id).where(clicks.c.enrollment_id.in_(ids), clicks.c.kind == CLICKED)
    return {int(i) for i in conn.execute(query.distinct()).scalars()}


def enrollment_facts(conn: Connection, enrollment: Any, now: datetime) -> dict[str, Any]:
    """What `enrollment.*` in a step's `when:` reads."""
    sent = select(func.count()).select_from(outbox).where(
        outbox.c.enrollment_id == enrollment.id, outbox.c.state.notin_(("failed", "skipped")))
    return {
        "enrollment.clicked": bool(clicked_enrollments(conn, [enrollment.id])),
        "enrollment.emails_sent": int(conn.execute(sent).scalar_one()),
        "enrollment.days_in": (now - (aware(enrollment.entered_at) or now)).days,
        "enrollment.group": enrollment.group_name,
    }
