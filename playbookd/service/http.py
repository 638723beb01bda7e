"""The daemon's HTTP listener: the application (http_app) on uvicorn (http_server), and the health report.

The daemon needs three names from here: `Site` (what the endpoints may use), `Server` (bound
on construction, `start`, `shutdown`) and `health`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy.engine import Engine

from playbookd.service.http_app import MAX_BODY, MAX_EVENTS_BODY, MAX_JSON_DEPTH, Site, build, mask
from playbookd.service.http_server import Limits, Listener
from playbookd.store import state
from playbookd.store.database import utcnow

__all__ = ["MAX_BODY", "MAX_EVENTS_BODY", "MAX_JSON_DEPTH", "Limits", "Server", "Site", "health", "mask"]


class Server:
    """Listening from construction (an address in use raises OSError there); serving from `start`."""

    def __init__(self, listen: str, site: Site, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self.listener = Listener(listen, build(site, limits.body_seconds), limits)
        self.server_address = self.listener.server_address

    def start(self) -> threading.Thread:
        return self.listener.start()

    def shutdown(self) -> None:
        """Stops accepting, lets requests in flight finish for a few seconds, and returns."""
        self.listener.shutdown()


def health(engine: Engine, failing: Mapping[str, str] = MappingProxyType({})) -> dict[str, Any]:
    """`failing`: jobs that failed their last runs, with the last error. Raises SQLAlchemyError when
    the store is unreachable; either way the check answers 503."""
    last = state.get(engine, "last_cycle") or {}
    at = last.get("at")
    age = (utcnow() - datetime.fromisoformat(at)).total_seconds() if at else None
    return {"status": "failing" if failing else "ok", "database": "reachable", "failing_jobs": dict(failing),
            "last_cycle_at": at, "last_cycle_age_seconds": None if age is None else round(age, 1)}
