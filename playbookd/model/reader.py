"""Reading one playbook file: what it is checked against, and the helpers every part's parser uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from playbookd.config.durations import Span, as_span, parse_span
from playbookd.config.yaml_loader import Key, Located
from playbookd.errors import Problem, Where, did_you_mean
from playbookd.model.conditions import Condition, FieldTypes, parse_condition
from playbookd.model.steps import ENROLLMENT_FACTS

KNOWN_ROLES = frozenset({"admin", "champion", "user", "billing", "owner", "executive"})


@dataclass
class Context:
    """What a playbook is checked against: known fields, segments, roles."""

    fields: FieldTypes
    segments: tuple[str, ...]
    roles: frozenset[str] = KNOWN_ROLES
    tz: tzinfo = UTC  # what a schedule's times are in


class Reader:
    """One playbook file being read: where each value is, and the problems found so far."""

    def __init__(self, doc: Located, ctx: Context) -> None:
        self.doc, self.ctx = doc, ctx
        self.problems: list[Problem] = []

    def fail(self, path: Key, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def where(self, path: Key) -> Where:
        line, col = self.doc.where(path)
        return Where(self.doc.file, line, col)

    def condition(self, path: Key, event_fields: bool = False, enrollment: bool = False) -> Condition:
        known = self.ctx.fields.with_events(event_fields)
        if enrollment:  # a step's `when:`: enrollment facts, and no contacts (steps load none to test)
            known = FieldTypes({**known.types, **ENROLLMENT_FACTS}, allow_events=event_fields)
        cond, problems = parse_condition(self.doc, path, known)
        self.problems += problems
        return cond

    def duration(self, value: Any, path: Key) -> Span | None:
        try:
            return as_span(parse_span(value))
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def text(self, data: Mapping[str, Any], key: str, path: Key, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail((*path, key), f"'{key}' must be non-empty text")
            return default or ""
        return value


def unknown_keys(reader: Reader, data: Mapping[str, Any], allowed: Iterable[str], path: Key) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, f"; allowed: {', '.join(allowed)}")
            reader.fail((*path, key), f"unknown key {key!r}{hint}")
