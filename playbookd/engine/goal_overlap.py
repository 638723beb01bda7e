"""A goal that can hold while the trigger does measures nothing for the accounts that enter with it
already met (they count as met at entry, never as conversions): `validate` warns when synced accounts
match a playbook's trigger and its goal together."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from itertools import islice

from sqlalchemy.engine import Engine

from playbookd.engine.enroll import entry_condition
from playbookd.engine.values import SAMPLE
from playbookd.errors import Problem
from playbookd.model import evaluation
from playbookd.runtime import Runtime
from playbookd.store.accounts import iter_accounts, load_account_types
from playbookd.store.people import attach_contacts


def goal_overlaps(runtime: Runtime, engine: Engine, now: datetime) -> list[Problem]:
    """Warnings, at each goal, for state-triggered playbooks whose trigger and goal hold together for
    synced accounts (event triggers depend on an event's data, which no account holds)."""
    playbooks = [p for p in runtime.active if p.goal is not None and p.event is None]
    if not playbooks:
        return []
    tz = runtime.config.tz
    entry = {p.id: entry_condition(p, runtime.exit_when) for p in playbooks}
    both: Counter[str] = Counter()
    example: dict[str, str] = {}
    with engine.connect() as conn:
        types = load_account_types(conn)
    sample = list(islice(iter_accounts(engine, types), SAMPLE))
    if runtime.needs_contacts:
        with engine.connect() as conn:
            attach_contacts(conn, sample)
    for record in sample:
        for playbook in playbooks:
            assert playbook.goal is not None
            if (evaluation.evaluate(entry[playbook.id], record, now, tz)
                    and evaluation.evaluate(playbook.goal.when, record, now, tz)):
                both[playbook.id] += 1
                example.setdefault(playbook.id, record["id"])
    warnings = []
    for playbook in playbooks:
        if both[playbook.id] and playbook.goal is not None:
            where = playbook.goal.where or playbook.where
            warnings.append(where.problem(
                f"goal: {both[playbook.id]} synced account(s) match the trigger and the goal together (e.g. "
                f"{example[playbook.id]}); they would enter with the goal already met, which is never a "
                "conversion: make the goal something the trigger rules out"))
    return warnings
