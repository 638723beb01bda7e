"""config.yaml's health section checked against the known fields and turned into HealthRules.

Each band is a condition on the measure's field, so it compares exactly as playbooks do (a band
`gte: 80` is false on a text value, never an error), and a `when` is an ordinary condition.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from playbookd.config.health import HealthSettings, Limit
from playbookd.config.health import Measure as MeasureSettings
from playbookd.config.yaml_loader import Key, Located
from playbookd.errors import Problem, did_you_mean
from playbookd.model import fields as F
from playbookd.model.conditions import (
    CHANGE,
    TREND,
    Condition,
    FieldTypes,
    leaves,
    parse_condition,
    parse_condition_data,
)
from playbookd.model.health import HEALTH_FIELDS, Band, HealthRules, Limits, Measure, Ops

_PLACE = ("health", "measures")


def _decimal(value: float) -> Decimal:
    return Decimal(str(value))  # the number as written, not its binary approximation


def _ops(limit: Limit) -> Ops:
    return tuple((op, _decimal(value)) for op, value in limit.operators().items())


class _Builder:
    def __init__(self, known: FieldTypes, file: str, doc: Located | None) -> None:
        self.known, self.file, self.doc = known, file, doc
        self.problems: list[Problem] = []

    def fail(self, path: Key, message: str) -> None:
        if self.doc is not None:
            self.problems.append(self.doc.problem(path, message))
        else:
            self.problems.append(Problem(self.file, None, None, message))

    def measure(self, spec: MeasureSettings, path: Key) -> Measure:
        weight = _decimal(spec.weight)
        if spec.when is not None:
            cond = self.condition(spec.when, (*path, "when"), spec.name)
            reads = tuple(dict.fromkeys(leaf.field for leaf in leaves(cond)))
            assert spec.score is not None and spec.else_ is not None  # the settings model requires them
            return Measure(spec.name, weight, reads, when=cond, score=_decimal(spec.score),
                           otherwise=_decimal(spec.else_))
        assert spec.field is not None
        ok, kind = self.field(spec.field, (*path, "field"), spec.name)
        if spec.bands is not None:
            bands = tuple(Band(self.band(spec.field, band.operators(), (*path, "bands", i)) if ok else None,
                               _decimal(band.score)) for i, band in enumerate(spec.bands))
            return Measure(spec.name, weight, (spec.field,), field=spec.field, bands=bands)
        mapping = tuple((self.key(key, kind, (*path, "map", key), spec.name), _decimal(score))
                        for key, score in (spec.map_ or {}).items())
        return Measure(spec.name, weight, (spec.field,), field=spec.field, mapping=mapping)

    def field(self, name: str, path: Key, measure: str) -> tuple[bool, str | None]:
        if name in HEALTH_FIELDS:
            self.fail(path, f"measure {measure}: cannot read {name}, which the measures compute")
            return False, None
        known, kind = self.known.lookup(name)
        if not known:
            hint = did_you_mean(name, self.known.types)
            self.fail(path, f"measure {measure}: unknown field {name!r}{hint} (fields come from the well-known "
                      "list, sources, custom_fields and the store)")
        return known, kind

    def band(self, field: str, ops: dict[str, Any], path: Key) -> Condition | None:
        if not ops:
            return None
        cond, problems = parse_condition_data({field: ops}, self.file, self.known)
        for problem in problems:
            self.fail(path, f"band: {problem.message}")
        return cond

    def key(self, key: Any, kind: str | None, path: Key, measure: str) -> Any:
        if key is None or isinstance(key, dict | list):
            self.fail(path, f"measure {measure}: a map key is one value, got {key!r}")
            return key
        try:
            return key if kind is None else F.coerce(key, kind)
        except ValueError as exc:
            self.fail(path, f"measure {measure}: map key {key!r}: {exc}")
            return key

    def condition(self, data: Any, path: Key, measure: str) -> Condition:
        if self.doc is not None:
            cond, problems = parse_condition(self.doc, path, self.known)
        else:
            cond, problems = parse_condition_data(data, self.file, self.known)
        self.problems += problems
        for leaf in leaves(cond):
            if leaf.op in CHANGE or leaf.op in TREND:
                why = f"measure {measure}: '{leaf.op}' has no meaning in a health measure (it scores the present)"
                self.problems.append(Problem(self.file, leaf.line, leaf.col, why))
            elif leaf.field in HEALTH_FIELDS:
                why = f"measure {measure}: cannot read {leaf.field}, which the measures compute"
                self.problems.append(Problem(self.file, leaf.line, leaf.col, why))
        return cond


def build_rules(settings: HealthSettings, known: FieldTypes, tz: ZoneInfo, file: str,
                doc: Located | None = None) -> tuple[HealthRules, list[Problem]]:
    """The rules and every problem found; with `doc` (config.yaml as loaded) problems carry line and column."""
    builder = _Builder(known, file, doc)
    measures = tuple(builder.measure(m, (*_PLACE, i)) for i, m in enumerate(settings.measures))
    colors = tuple((name, Limits(_ops(c.red), _ops(c.yellow))) for name, c in settings.colors.items())
    return HealthRules(measures, colors, tz), builder.problems
