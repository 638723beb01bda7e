"""One evaluation: goals, exits, entry into state-triggered playbooks, then pending events."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from playbookd.engine import scope as S
from playbookd.engine.enroll import evaluate_range, open_occurrences
from playbookd.engine.events import process_events
from playbookd.engine.exits import exit_matching
from playbookd.engine.goals import measure
from playbookd.runtime import Runtime
from playbookd.store.database import transaction

log = logging.getLogger("playbookd.engine")


def evaluate(runtime: Runtime, engine: Engine, now: datetime, workers: int | None = None,
             full: bool | None = None) -> int:
    """Goals and exits first, then every account (or those changed or due: engine.scope; `full`
    overrides the choice), then pending events; returns enrollments made."""
    with engine.connect() as conn:
        why = S.wants_full(runtime, conn, now)
    everything = why is not None if full is None else full
    if everything:
        log.info("full evaluation: %s", why or "asked for", extra={"reason": why})
    scope = S.scope(runtime, engine, now, everything, runtime.playbooks)
    measure(runtime, engine, now, scope=scope)
    exit_matching(runtime, engine, now, scope=scope)
    with transaction(engine) as conn:
        open_occurrences(runtime, conn, now)
    enrolled = evaluate_range(runtime, engine, now, None, workers, scope) + process_events(runtime, engine, now)
    if everything:
        with transaction(engine) as conn:
            S.record_full(runtime, conn, now)
    return enrolled


