"""Text a playbook compares a field with that the synced data never holds: `status: Active`
against accounts whose status is `active` is a silent no-op, so `validate` warns about it with
the closest values seen."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from sqlalchemy.engine import Engine

from playbookd.errors import Problem, did_you_mean
from playbookd.model import fields as F
from playbookd.model.conditions import Condition, Leaf, leaves
from playbookd.model.health import COLORS, HEALTH_COLOR
from playbookd.runtime import Runtime
from playbookd.store.accounts import iter_accounts, load_account_types

SAMPLE = 20_000  # accounts read for the values a field holds
TEXT_OPS = ("eq", "ne", "in", "not_in")


def _conditions(runtime: Runtime) -> Iterator[tuple[str, Condition]]:
    if runtime.exit_when is not None:
        yield str(runtime.config.path), runtime.exit_when
    for playbook in runtime.playbooks:
        for cond in (playbook.trigger, playbook.exit_when, playbook.goal.when if playbook.goal else None):
            if cond is not None:
                yield playbook.file, cond


def _literals(leaf: Leaf) -> list[str]:
    values = leaf.value if leaf.op in ("in", "not_in") else (leaf.value,)
    return [v for v in values if isinstance(v, str)]


def _text_leaves(runtime: Runtime) -> list[tuple[str, Leaf]]:
    found = []
    for file, cond in _conditions(runtime):
        for leaf in leaves(cond):
            ops = (*TEXT_OPS, "changed_from", "changed_to") if leaf.field == HEALTH_COLOR else TEXT_OPS
            if leaf.op in ops and runtime.types.get(leaf.field) == F.STRING and _literals(leaf):
                found.append((file, leaf))
    return found


def _seen(engine: Engine, names: set[str]) -> dict[str, set[str]]:
    with engine.connect() as conn:
        types = load_account_types(conn)
    seen: dict[str, set[str]] = {name: set() for name in names}
    for record in islice(iter_accounts(engine, types), SAMPLE):
        for name in names:
            value = record.get(name)
            if isinstance(value, str):
                seen[name].add(value)
    return seen


def unseen_values(runtime: Runtime, engine: Engine) -> list[Problem]:
    """Warnings, located in the playbook (or config.yaml), for text no synced account holds."""
    uses = _text_leaves(runtime)
    seen = _seen(engine, {leaf.field for _, leaf in uses if leaf.field != HEALTH_COLOR}) if uses else {}
    warnings = []
    for file, leaf in uses:
        if leaf.field == HEALTH_COLOR:  # a closed set: an account not red today may turn red tomorrow
            warnings += [Problem(file, leaf.line, leaf.col, f"{leaf.field}: {text!r} is not a health colour"
                                 + did_you_mean(text, COLORS, f"; colours are {', '.join(COLORS)}"))
                         for text in _literals(leaf) if text not in COLORS]
            continue
        known = seen[leaf.field]
        for text in (t for t in _literals(leaf) if known and t not in known):
            shown = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
            hint = did_you_mean(text, sorted(known), f"; values seen: {shown}")
            warnings.append(Problem(file, leaf.line, leaf.col,
                                    f"{leaf.field}: {text!r} is in no synced account{hint}"))
    return warnings
