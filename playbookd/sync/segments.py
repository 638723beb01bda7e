"""Segments: config.segments in order, first match wins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, update

from playbookd.config.settings import Config
from playbookd.errors import ValidationError
from playbookd.model.account import AccountRecord, decode_account, value_key
from playbookd.model.conditions import Condition, FieldTypes, leaves, parse_condition_data, static
from playbookd.model.evaluation import evaluate
from playbookd.store.accounts import iter_accounts, load_account_types, records_by_id
from playbookd.store.chunks import chunked
from playbookd.store.database import transaction, utcnow
from playbookd.store.marks import bump
from playbookd.store.schema import accounts

DEFAULT_SEGMENT = "default"


class Segmenter:
    """config.segments in order, first match wins; config validation requires a catch-all, so
    'default' (when nothing matches) only shows up for configs that skipped validation."""

    def __init__(self, config: Config, types: Mapping[str, str | None], now: datetime) -> None:
        known = FieldTypes(dict(types))
        self.rules: list[tuple[str, Condition | None]] = []
        for segment in config.segments:
            self.rules.append((segment.name, self._parse(config, segment.name, segment.when, known)))
        self.now, self.tz = now, config.tz
        self.names = sorted({leaf.field for _, cond in self.rules if cond is not None for leaf in leaves(cond)})
        # static conditions that do not read the id give accounts with the same values of the fields
        # they name the same segment: most accounts have a twin (a few fields, few values each)
        self.cached = "id" not in self.names and all(static(cond) for _, cond in self.rules)
        self.found: dict[tuple[Any, ...], str] = {}
        self.kinds: tuple[str | None, ...] = ()

    @staticmethod
    def _parse(config: Config, name: str, when: Any, known: FieldTypes) -> Condition | None:
        if when is None:
            return None
        cond, problems = parse_condition_data(when, str(config.path), known)
        if problems:
            raise ValidationError(problems, f"{config.path}: segment {name}: bad condition")
        return cond

    @property
    def constant(self) -> str | None:
        """The segment every account gets when the first segment has no condition."""
        return self.rules[0][0] if self.rules and self.rules[0][1] is None else None

    def __call__(self, record: AccountRecord) -> str:
        for name, cond in self.rules:
            if cond is None or evaluate(cond, record, self.now, self.tz):
                return name
        return DEFAULT_SEGMENT

    def of(self, account_id: str, data: Mapping[str, Any], changes: Mapping[str, Any],
           types: Mapping[str, str]) -> str:
        if self.constant is not None:
            return self.constant
        if not self.cached:
            return self._of(account_id, data, changes, types)
        if (kinds := tuple(types.get(n) for n in self.names)) != self.kinds:  # read otherwise: start again
            self.kinds = kinds
            self.found.clear()
        key = tuple(value_key(data.get(n)) for n in self.names)
        try:
            return self.found[key]
        except KeyError:
            pass
        except TypeError:  # a list or an object in a field: not a key
            return self._of(account_id, data, changes, types)
        if len(self.found) >= CACHED:
            self.found.clear()
        segment = self.found[key] = self._of(account_id, data, changes, types)
        return segment

    def _of(self, account_id: str, data: Mapping[str, Any], changes: Mapping[str, Any],
            types: Mapping[str, str]) -> str:
        # only the fields the conditions name: decoding whole records costs more than evaluating
        names = self.names
        return self(decode_account(account_id, "", {n: data[n] for n in names if n in data},
                                   {n: changes[n] for n in names if n in changes}, types))


CACHED = 50_000  # distinct inputs a Segmenter keeps: past it, forgotten and evaluated again


def assign_segments(engine: Engine, config: Config, account_ids: Iterable[str] | None = None) -> int:
    """(Re)assign the segment of the given accounts (all when None); returns how many changed."""
    with engine.connect() as conn:
        types = load_account_types(conn)
    segmenter = Segmenter(config, types, utcnow())
    records = iter_accounts(engine, types) if account_ids is None else records_by_id(engine, account_ids, types)
    changed = 0
    for batch in chunked(records):
        moves = [{"b_id": r["id"], "b_segment": s} for r in batch if (s := segmenter(r)) != r["segment"]]
        if moves:
            with transaction(engine) as conn:
                conn.execute(update(accounts).where(accounts.c.id == bindparam("b_id"))
                             .values(segment=bindparam("b_segment"), unseen=bump()), moves)
        changed += len(moves)
    return changed
