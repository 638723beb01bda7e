from datetime import date

import pytest

from playbookd.config.yaml_loader import parse_yaml
from playbookd.model.conditions import All, Any_, FieldTypes, Leaf, Not, leaves, parse_condition
from playbookd.model.fields import ACCOUNT_FIELDS

KNOWN = FieldTypes({**ACCOUNT_FIELDS, "region": "string", "seats": None})


def parse(text: str, known: FieldTypes = KNOWN):
    doc, problems = parse_yaml(text, "pb.yaml")
    assert doc is not None, problems
    return parse_condition(doc, ("when",), known)


def test_shorthand_eq_and_nesting():
    cond, problems = parse("""
when:
  all:
    - status: active
    - any:
        - arr: {gte: 1000}
        - not: {plan: {in: [starter, growth]}}
""")
    assert problems == []
    assert cond == All((Leaf("status", "eq", "active"),
                        Any_((Leaf("arr", "gte", 1000), Not(Leaf("plan", "in", ("starter", "growth")))))))


def test_values_are_typed_to_the_field():
    cond, problems = parse("when: {renewal_date: {between: ['2026-01-01', 2026-03-01]},"
                           " last_login_at: {older_than: 7d}}")
    assert problems == []
    assert leaves(cond) == [Leaf("renewal_date", "between", (date(2026, 1, 1), date(2026, 3, 1))),
                            Leaf("last_login_at", "older_than", 7 * 86400)]


def test_unknown_field_has_position_and_hint():
    _, problems = parse("when:\n  all:\n    - last_logn_at: {older_than: 7d}\n")
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.line) == ("pb.yaml", 3)
    assert "unknown field 'last_logn_at'" in p.message and "last_login_at" in p.message


@pytest.mark.parametrize("text, fragment", [
    ("when: {arr: {greater: 5}}", "unknown operator 'greater'"),
    ("when: {arr: {older_than: 7d}}", "needs a date or datetime field"),
    ("when: {last_login_at: {older_than: 7 days}}", "bad duration"),
    ("when: {name: {matches: '(['}}", "bad regular expression"),
    ("when: {name: {matches: '(a+)\\1'}}", "no backreferences or lookaround"),
    ("when: {name: {matches: '^(?=a)'}}", "no backreferences or lookaround"),
    ("when: {name: {matches: 'a{5000}'}}", "invalid repetition size"),
    ("when: {arr: {gt: lots}}", "expected a number"),
    ("when: {arr: {between: [1]}}", "two values"),
    ("when: {plan: [a, b]}", "needs an operator"),
    ("when: {all: []}", "non-empty list"),
    ("when: {status: {exists: maybe}}", "true or false"),
    ("when: {name: {contains: 5}}", "text value"),
    ("when: []", "a condition is a mapping"),
])
def test_bad_conditions_are_reported_with_location(text, fragment):
    _, problems = parse(text)
    assert problems, text
    assert fragment in problems[0].message
    assert problems[0].line == 1 and problems[0].col is not None


def test_every_problem_is_reported_at_once():
    _, problems = parse("when:\n  all:\n    - nope: 1\n    - arr: {bad: 1}\n    - renewal_date: {within_next: x}\n")
    assert [p.line for p in problems] == [3, 4, 5]


def test_event_fields_only_where_allowed():
    _, problems = parse("when: {event.score: {lte: 6}}")
    assert "unknown field 'event.score'" in problems[0].message
    _, problems = parse("when: {event.score: {lte: 6}}", FieldTypes(KNOWN.types, allow_events=True))
    assert problems == []


def test_untyped_custom_field_accepts_any_operator():
    cond, problems = parse("when: {seats: {gt: 10}}")
    assert problems == [] and cond == Leaf("seats", "gt", 10)
