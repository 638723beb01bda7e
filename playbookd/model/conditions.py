"""The condition language: its syntax tree and the parser that checks it against known fields."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from playbookd.config.durations import Span, as_span, format_duration, parse_span
from playbookd.config.yaml_loader import Key, Located
from playbookd.errors import Problem, did_you_mean
from playbookd.model import fields as F
from playbookd.model.patterns import PatternError, compile_pattern

COMPARE = ("eq", "ne", "gt", "gte", "lt", "lte")
PAST = ("older_than", "within_last")
FUTURE = ("within_next", "beyond_next")
CHANGE = ("changed", "changed_from", "changed_to")
TREND = ("dropped_by", "rose_by")
TREND_FIELD = "health_score"  # the one field whose history is kept
OPERATORS = (*COMPARE, "in", "not_in", "exists", "contains", "matches", "between",
             *PAST, *FUTURE, *CHANGE, *TREND)
ORDERED_TYPES = F.NUMERIC | F.TEMPORAL | {F.STRING}


@dataclass(frozen=True)
class Leaf:
    """`field: {op: value}`; value is typed to the field (durations in seconds, dates as dates)."""

    field: str
    op: str
    value: Any
    line: int | None = dataclass_field(default=None, compare=False)
    col: int | None = dataclass_field(default=None, compare=False)


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class Contacts:
    """`contacts: {any: C}`, `{none: C}` or `{count: {gte: 3}, where: C}`: the account's contacts (every
    one synced, whatever its status) tested with a condition on contact fields. `count` is the
    operator and number the matching contacts are compared with; None for any and none."""

    quantifier: str  # any | none | count
    where: Condition
    count: Compared | None = None
    line: int | None = dataclass_field(default=None, compare=False)
    col: int | None = dataclass_field(default=None, compare=False)


Condition = Leaf | All | Any_ | Not | Contacts
TRUE = All(())
QUANTIFIERS = ("any", "none", "count")


def leaves(cond: Condition) -> list[Leaf]:
    """The account-field leaves; those inside `contacts:` test contact fields and are not listed."""
    if isinstance(cond, Contacts):
        return []
    if isinstance(cond, Leaf):
        return [cond]
    if isinstance(cond, Not):
        return leaves(cond.item)
    return [leaf for item in cond.items for leaf in leaves(item)]


STATIC = (*COMPARE, "in", "not_in", "exists", "contains", "matches", "between")


def static(cond: Condition | None) -> bool:
    """Whether `cond` depends on the account's field values alone: not on the clock, its changes,
    its health history or its contacts (so the same values always give the same outcome)."""
    if cond is None:
        return True
    if isinstance(cond, Contacts):
        return False
    if isinstance(cond, Leaf):
        return cond.op in STATIC
    if isinstance(cond, Not):
        return static(cond.item)
    return all(static(item) for item in cond.items)


def uses_contacts(cond: Condition | None) -> bool:
    if cond is None or isinstance(cond, Leaf):
        return False
    if isinstance(cond, Contacts):
        return True
    if isinstance(cond, Not):
        return uses_contacts(cond.item)
    return any(uses_contacts(item) for item in cond.items)


def contact_fields(cond: Condition | None) -> set[str]:
    """The contact fields the `contacts:` conditions inside `cond` test."""
    if cond is None or isinstance(cond, Leaf):
        return set()
    if isinstance(cond, Contacts):
        return {leaf.field for leaf in leaves(cond.where)}
    if isinstance(cond, Not):
        return contact_fields(cond.item)
    return {name for item in cond.items for name in contact_fields(item)}


class FieldTypes:
    """What fields a condition may name and their types (None: type unknown, any operator goes);
    `contacts`, the contact fields a `contacts:` condition may name (None: no such condition here)."""

    def __init__(self, types: dict[str, str | None], allow_events: bool = False,
                 contacts: FieldTypes | None = None, changes: bool = True) -> None:
        self.types = types
        self.allow_events = allow_events
        self.contacts = contacts
        self.changes = changes  # changed/changed_from/changed_to: tracked for account fields only

    def with_events(self, allow: bool) -> FieldTypes:
        return FieldTypes(self.types, allow, self.contacts, self.changes)

    def lookup(self, name: str) -> tuple[bool, str | None]:
        if name.startswith("event.") and self.allow_events and len(name) > 6:
            return True, None
        if name in self.types:
            return True, self.types[name]
        return False, None


class AnyField(FieldTypes):
    """Every name is a field, typed as far as `types` knows: for conditions config validation already
    checked with locations, where a column no row has filled yet is simply missing."""

    def lookup(self, name: str) -> tuple[bool, str | None]:
        return True, self.types.get(name)


class _Parser:
    def __init__(self, doc: Located, known: FieldTypes) -> None:
        self.doc = doc
        self.known = known
        self.problems: list[Problem] = []

    def fail(self, path: Key, message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def node(self, data: Any, path: Key) -> Condition:
        if not isinstance(data, dict) or not data:
            self.fail(path, "a condition is a mapping: all, any, not, or field: {operator: value}")
            return TRUE
        parts = [self.entry(str(key), value, (*path, key)) for key, value in data.items()]
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def entry(self, key: str, value: Any, path: Key) -> Condition:
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self.fail(path, f"'{key}' takes a non-empty list of conditions")
                return TRUE
            items = tuple(self.node(item, (*path, i)) for i, item in enumerate(value))
            return All(items) if key == "all" else Any_(items)
        if key == "not":
            return Not(self.node(value, path))
        if key == "contacts":  # a reserved name: never an account field
            return self.contacts(value, path)
        return self.field(key, value, path)

    def contacts(self, spec: Any, path: Key) -> Condition:
        if self.known.contacts is None:
            self.fail(path, "'contacts' conditions work on an account's conditions (trigger, exit_when, goal), "
                      "not here")
            return TRUE
        form = "contacts takes {any: CONDITION}, {none: CONDITION} or {count: {gte: N}, where: CONDITION}"
        given = [q for q in QUANTIFIERS if isinstance(spec, dict) and q in spec]
        if len(given) != 1:
            self.fail(path, form)
            return TRUE
        allowed = ("count", "where") if given[0] == "count" else given
        for key in spec:
            if key not in allowed:
                self.fail((*path, key), f"unknown key {key!r} in contacts; {form}")
        line, col = self.doc.where(path)
        inner = _Parser(self.doc, self.known.contacts)
        if given[0] != "count":
            where = inner.node(spec[given[0]], (*path, given[0]))
            self.problems += inner.problems
            return Contacts(given[0], where, None, line, col)
        where = inner.node(spec["where"], (*path, "where")) if "where" in spec else TRUE
        self.problems += inner.problems
        return Contacts("count", where, self._count(spec["count"], (*path, "count")), line, col)

    def _count(self, spec: Any, path: Key) -> Compared:
        try:
            return _compared(spec if isinstance(spec, dict) else {"eq": spec}, F.INTEGER)
        except ValueError as exc:
            self.fail(path, f"contacts count: {exc}")
            return Compared("gte", 0)

    def field(self, name: str, spec: Any, path: Key) -> Condition:
        known, kind = self.known.lookup(name)
        if not known:
            self.fail((*path[:-1], name), _unknown_field(name, self.known))
            return TRUE
        if not isinstance(spec, dict):
            if isinstance(spec, list):
                self.fail(path, f"{name}: a list needs an operator, e.g. {{in: [...]}}")
                return TRUE
            spec = {"eq": spec}
        if not spec:
            self.fail(path, f"{name}: no operator given")
            return TRUE
        leaves_ = [self.leaf(name, kind, str(op), value, (*path, op)) for op, value in spec.items()]
        return leaves_[0] if len(leaves_) == 1 else All(tuple(leaves_))

    def leaf(self, name: str, kind: str | None, op: str, value: Any, path: Key) -> Condition:
        line, col = self.doc.where(path)
        if op not in OPERATORS:
            ops = ", ".join(OPERATORS)
            self.fail(path, f"unknown operator {op!r} on {name}; operators are {ops}")
            return TRUE
        if op in TREND and name != TREND_FIELD:
            self.fail(path, f"'{op}' works on {TREND_FIELD}, the one field whose history playbookd keeps")
            return TRUE
        if op in CHANGE and not self.known.changes:
            self.fail(path, f"'{op}' on contact field {name}: changes are tracked for account fields only")
            return TRUE
        try:
            typed = _compared(value, kind) if op in CHANGE[1:] and isinstance(value, dict) else \
                _typed_value(op, value, kind)
        except ValueError as exc:
            self.fail(path, f"{name} {op}: {exc}")
            return TRUE
        return Leaf(name, op, typed, line, col)


def _unknown_field(name: str, known: FieldTypes) -> str:
    facts = [n for n in known.types if n.startswith("enrollment.")]
    if name.startswith("enrollment."):
        if not facts:
            return f"{name!r}: enrollment facts are read only in a step's `when:`"
        return f"unknown enrollment fact {name!r}{did_you_mean(name, facts)} (enrollment facts: {', '.join(facts)})"
    hint = did_you_mean(name, known.types)
    return f"unknown field {name!r}{hint} (fields come from the well-known list, sources and the store)"


@dataclass(frozen=True)
class Compared:
    """`changed_from: {gte: 60}`: the value before (or after) the change, tested with an operator."""

    op: str
    value: Any

    def __str__(self) -> str:
        return f"{{{self.op}: {self.value!r}}}"


@dataclass(frozen=True)
class Trend:
    """`dropped_by: {points: 15, within: 30d}`: how far the score moved within a window of days."""

    points: float
    within: Span

    def __str__(self) -> str:
        return f"{{points: {self.points:g}, within: {format_duration(self.within, largest='d')}}}"


def _trend(value: Any) -> Trend:
    if not isinstance(value, dict) or set(value) != {"points", "within"}:
        raise ValueError("takes {points: N, within: DURATION}, e.g. {points: 15, within: 30d}")
    points = value["points"]
    if isinstance(points, bool) or not isinstance(points, int | float) or not 0 < points <= 100:
        raise ValueError(f"points is a number above 0 and at most 100, got {points!r}")
    return Trend(float(points), as_span(parse_span(value["within"])))


COMPARABLE = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between")


def _compared(spec: dict[Any, Any], kind: str | None) -> Compared:
    if len(spec) != 1 or next(iter(spec)) not in COMPARABLE:
        raise ValueError(f"takes a value or one operator of {', '.join(COMPARABLE)}, e.g. {{gte: 60}}")
    op, value = next(iter(spec.items()))
    return Compared(str(op), _typed_value(str(op), value, kind))


def _typed_value(op: str, value: Any, kind: str | None) -> Any:
    if op in TREND:
        return _trend(value)
    if op in PAST or op in FUTURE:
        _require(kind is None or kind in F.TEMPORAL, op, kind, "a date or datetime field")
        return as_span(parse_span(value))  # seconds, or Months (calendar months in the project's zone)
    if op in ("exists", "changed"):
        if not isinstance(value, bool):
            raise ValueError("takes true or false")
        return value
    if op in ("contains", "matches"):
        _require(kind is None or kind == F.STRING, op, kind, "a text field")
        if not isinstance(value, str):
            raise ValueError("takes a text value")
        if op == "matches":
            try:
                compile_pattern(value)
            except PatternError as exc:
                raise ValueError(f"bad regular expression: {exc}") from exc
        return value
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError("takes a non-empty list")
        return tuple(_scalar(v, kind) for v in value)
    if op == "between":
        _require(kind is None or kind in ORDERED_TYPES, op, kind, "a number, date or text field")
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("takes a list of two values: [low, high]")
        return (_scalar(value[0], kind), _scalar(value[1], kind))
    if op in ("gt", "gte", "lt", "lte"):
        _require(kind is None or kind in ORDERED_TYPES, op, kind, "a number, date or text field")
    return _scalar(value, kind)


def _require(ok: bool, op: str, kind: str | None, what: str) -> None:
    if not ok:
        raise ValueError(f"'{op}' needs {what}, but this field holds {kind} values")


def _scalar(value: Any, kind: str | None) -> Any:
    if isinstance(value, (dict, list)) or value is None:
        raise ValueError(f"expected a single value, got {value!r}")
    if kind is None:
        return value
    typed = F.coerce(value, kind)
    if typed is None:
        raise ValueError("empty value")
    return typed


def parse_condition(doc: Located, path: Key, known: FieldTypes) -> tuple[Condition, list[Problem]]:
    """Parse the condition at `path` of `doc`; problems are located in the YAML file."""
    parser = _Parser(doc, known)
    data: Any = doc.data
    for step in path:
        data = data[step]
    cond = parser.node(data, path)
    return cond, parser.problems


def parse_condition_data(data: Any, file: str, known: FieldTypes) -> tuple[Condition, list[Problem]]:
    """Parse a condition that has no YAML positions (e.g. from code or JSON)."""
    return parse_condition(Located(file, {"c": data}, {}), ("c",), known)
