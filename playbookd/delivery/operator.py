"""An operator's call on messages playbookd will not decide alone: resend (queue again) or drop.
Used by `playbookd outbox resend|drop` and by the console."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from playbookd.errors import UserError
from playbookd.store import audit
from playbookd.store.database import transaction, utcnow
from playbookd.store.schema import outbox

OPERATOR_STATES = {"resend": ("unknown", "failed"), "drop": ("unknown", "failed", "queued")}


def outbox_decide(engine: Engine, ids: Sequence[int], action: str, user: str | None = None) -> str:
    """All or nothing: one message in the wrong state refuses the whole call. `user` (the console's
    logged-in user) goes into each audit entry."""
    allowed = OPERATOR_STATES[action]
    now = utcnow()
    with transaction(engine) as conn:
        rows = {r.id: r for r in conn.execute(select(outbox).where(outbox.c.id.in_(list(ids))))}
        problems = [f"message {i}: no such message" for i in ids if i not in rows]
        problems += [f"message {i}: is {rows[i].state}; {action} applies to {' or '.join(allowed)}"
                     for i in ids if i in rows and rows[i].state not in allowed]
        if problems:
            raise UserError("; ".join(problems))
        values = {"state": "queued", "not_before": now, "claimed_by": None} if action == "resend" else {
            "state": "dropped"}
        conn.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(**values))
        for row in rows.values():
            detail: dict[str, object] = {"outbox_id": row.id, **({"user": user} if user else {})}
            audit.record(conn, f"operator_{action}", account_id=row.account_id, playbook_id=row.playbook_id,
                         enrollment_id=row.enrollment_id, contact=row.to_addr, reason=f"was {row.state}",
                         detail=detail, at=now)
    return f"{action}: {len(ids)} message(s)"
