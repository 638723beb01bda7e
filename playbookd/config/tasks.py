"""The `tasks:` section of config.yaml: who gets a task without a CSM, and the CRM mirror."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from playbookd.config.base import Model
from playbookd.config.webhooks import checked_headers, checked_secret


class TaskWebhook(Model):
    url: str = Field(description="Where every task created, refreshed or changed is POSTed as JSON (a CRM's "
                     "endpoint), with the retries of webhook steps; see the README for the payload")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with each POST, e.g. "
                                    "Authorization: Bearer ${CRM_TOKEN}")
    secret: str | None = Field(None, description="Signs each POST (Playbookd-Signature, as webhooks.receivers)")
    _h = field_validator("headers")(checked_headers)
    _s = field_validator("secret")(checked_secret)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"tasks.webhook.url {value!r} is not an http(s) URL (is a variable unset?)")
        return value


class Tasks(Model):
    fallback_assignee: dict[str, str] = Field(
        default_factory=dict, description="Who gets a task whose account has no CSM (csm_email empty), per "
        "segment; `default` for the others; unset: such a task has no assignee")
    webhook: TaskWebhook | None = Field(None, description="Mirror tasks to a CRM; unset: tasks stay in playbookd")

    @field_validator("fallback_assignee")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{segment}: {address!r}" for segment, address in value.items()
               if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address or "")]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return value

    def fallback(self, segment: str | None) -> str | None:
        return self.fallback_assignee.get(segment or "") or self.fallback_assignee.get("default")
