"""The `report:` section of config.yaml: how the console's playbook figures are kept."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from playbookd.config.base import Model, duration


class ReportSettings(Model):
    refresh_every: timedelta = Field(timedelta(minutes=5), description="How often the daemon's leader recomputes "
                                     "each playbook's report figures for the console (its playbook pages show "
                                     "them with their age)")
    live_under: int = Field(10_000, ge=0, description="A playbook with fewer enrollments than this is counted live "
                            "on every console view instead; 0: always the refreshed figures")
    _d = field_validator("refresh_every", mode="before")(duration)
