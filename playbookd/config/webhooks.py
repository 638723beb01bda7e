"""The `webhooks:` section of config.yaml, and the headers and signing secret a receiver gets.

Credentials live in config.yaml (from `${VAR}`), never in a playbook or in the store: they are looked
up by the URL when a webhook is posted, so rotating a token needs a reload, not a re-queue.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from playbookd.config.base import Model

# set by playbookd itself: a receiver relies on them meaning what they say
RESERVED_HEADERS = {"content-type", "content-length", "host", "idempotency-key", "user-agent",
                    "playbookd-signature", "transfer-encoding", "connection"}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name


def checked_headers(value: dict[str, str]) -> dict[str, str]:
    """Header names that are tokens and not ours, values without CR, LF or NUL (no header injection)."""
    for name, text in value.items():
        if not _TOKEN.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP field name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by playbookd and cannot be configured")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: the value must be one line of text (is a variable unset?)")
    return value


def checked_secret(value: str | None) -> str | None:
    if value is not None and len(value) < 16:
        raise ValueError("a signing secret needs at least 16 characters (is a variable unset?)")
    return value


class Receiver(Model):
    url: str = Field(description="Applies to every webhook whose URL starts with this (the longest match wins)")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with each POST, e.g. "
                                    "Authorization: Bearer ${CRM_TOKEN}")
    secret: str | None = Field(None, description="Signs each POST: Playbookd-Signature: t=<unix time>,v1=<hex "
                               "HMAC-SHA256 of '<t>.' + body> (see the README)")
    _h = field_validator("headers")(checked_headers)
    _s = field_validator("secret")(checked_secret)


class Webhooks(Model):
    allow_private: bool = Field(False, description="Let webhook steps post to loopback, link-local and private "
                                "addresses (off: a playbook cannot reach into the network the daemon runs in)")
    receivers: list[Receiver] = Field(default_factory=list, description="Headers and a signing secret per "
                                      "receiver, chosen by URL prefix; a URL no entry matches gets neither")
