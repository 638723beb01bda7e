"""The `delivery:` section of config.yaml: transport, SMTP, send-time rules and sending processes."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from playbookd.config.base import Model, duration


class Smtp(Model):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = Field(False, description="Upgrade with STARTTLS after connecting")
    tls: bool = Field(False, description="Implicit TLS (port 465)")
    username: str | None = None
    password: str | None = None
    timeout: float = Field(30.0, gt=0, description="Seconds per SMTP command")
    circuit_after: int = Field(3, ge=0, description="Messages in a row the server refuses for its policy or our "
                               "setup (5.7.x) before delivery pauses and retries later; 0: never pause")
    connections: int = Field(4, ge=1, le=64, description="SMTP connections used at once, kept open from one "
                             "delivery tick to the next")
    batch: int = Field(25, ge=1, le=1000, description="Messages each connection sends between two commits; after a "
                       "kill -9 at most connections x batch messages are `unknown`")


class FrequencyCap(Model):
    max: int = Field(ge=1, description="Emails per contact per window, all playbooks together")
    per: timedelta = Field(description="The window")
    max_wait: timedelta = Field(timedelta(days=3), description="A message held by the cap longer is skipped")
    _per = field_validator("per", "max_wait", mode="before")(duration)


class QuietHours(Model):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM local time")
    weekends: bool = Field(False, description="Also hold mail on Saturdays and Sundays")


@lru_cache(maxsize=8)
def _from_domain(from_: str) -> tuple[str, ...]:
    """The domain of `delivery.from`: asked for every email queued (parsing it each time was about 6% of `advance`)."""
    domain = parseaddr(from_)[1].rpartition("@")[2]
    return (domain,) if domain else ()


class Delivery(Model):
    transport: Literal["file", "smtp"] = Field("file", description="file writes .eml files")
    directory: Path = Field(Path("outbox"), description="Where the file transport writes")
    from_: str = Field(
        "Customer Success <success@example.com>", alias="from", description="From header"
    )
    reply_to: str | None = Field(None, description="Reply-To header")
    sender_domains: list[str] | None = Field(
        None, description="Domains you send for (SPF/DKIM aligned): a `from:` address (a CSM's) in one of them "
        "is the From, any other becomes the Reply-To; unset: the domain of `from`")
    smtp: Smtp = Field(default_factory=Smtp)
    frequency_cap: FrequencyCap | None = Field(None, description="Unset: no cap")
    quiet_hours: QuietHours | None = Field(None, description="Unset: send around the clock")
    rate_per_second: float = Field(20.0, gt=0, description="Messages per second at most, all processes together")
    processes: int = Field(1, ge=1, le=16, description="Processes that send at once, each with its own "
                           "smtp.connections and an equal share of rate_per_second; after a kill -9 at most "
                           "processes x connections x batch messages are `unknown`")
    max_age: timedelta = Field(timedelta(days=5), description="Retry temporary failures this long")
    unsubscribe_secret: str | None = Field(None, description="HMAC key for unsubscribe links")
    track_clicks: bool = Field(False, description="Send links through a signed redirect on the HTTP listener "
                               "(company.public_url) that records the click; no open pixel either way")
    scan_seconds: float = Field(10.0, ge=0, description="A link fetched this soon after delivery is a mail "
                                "scanner's, recorded as scanned, not as a click")
    _max_age = field_validator("max_age", mode="before")(duration)

    @property
    def sending_domains(self) -> list[str]:
        if self.sender_domains is not None:
            return self.sender_domains
        return list(_from_domain(self.from_))
