"""What every section of config.yaml is built on: unknown keys refused, durations written as text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from playbookd.config.durations import parse_duration


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def duration(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(value)
