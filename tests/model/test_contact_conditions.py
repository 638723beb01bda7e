"""`contacts:` conditions: parsed with located problems, evaluated by the reference semantics, and
the rules engine (flat facts, precomputed per account) agreeing with it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from playbookd.config.yaml_loader import parse_yaml
from playbookd.engine.rules import RuleEngine
from playbookd.model import evaluation
from playbookd.model.account import CONTACTS
from playbookd.model.conditions import Condition, Contacts, FieldTypes, leaves, parse_condition, uses_contacts
from playbookd.model.fields import ACCOUNT_FIELDS, CONTACT_FIELDS

PEOPLE = FieldTypes({**CONTACT_FIELDS, "last_login_at": "datetime", "seats": "integer"}, changes=False)
KNOWN = FieldTypes(dict(ACCOUNT_FIELDS), contacts=PEOPLE)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def parse(text: str, known: FieldTypes = KNOWN) -> tuple[Condition, list[Any]]:
    doc, problems = parse_yaml(text, "pb.yaml")
    assert doc is not None, problems
    return parse_condition(doc, ("when",), known)


def person(role: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {"email": f"{role}{len(extra)}@x.example", "role": role, "status": status, **extra}


def account(*people: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "A", "segment": "s", "_changes": {}, CONTACTS: list(people), **fields}


def holds(text: str, record: dict[str, Any]) -> bool:
    cond, problems = parse(text)
    assert problems == []
    return evaluation.evaluate(cond, record, NOW, UTC_ZONE)


def test_any_none_and_count_parse_into_one_node_each() -> None:
    cond, problems = parse("when: {contacts: {count: {gte: 3}, where: {role: admin}}}")
    assert problems == []
    assert isinstance(cond, Contacts) and cond.quantifier == "count" and cond.count is not None
    assert (cond.count.op, cond.count.value) == ("gte", 3)
    assert uses_contacts(cond) and leaves(cond) == []  # contact leaves are not account fields


def test_a_billing_contact_is_asked_for_by_role_and_status() -> None:
    text = "when: {contacts: {any: {role: billing, status: active}}}"
    assert holds(text, account(person("admin"), person("billing")))
    assert not holds(text, account(person("admin"), person("billing", "left")))
    assert not holds(text, account())
    assert holds("when: {contacts: {none: {role: billing}}}", account(person("admin")))
    assert not holds("when: {contacts: {none: {role: billing}}}", account(person("billing", "left")))


def test_count_compares_the_matching_contacts_and_defaults_to_all_of_them() -> None:
    three = account(person("admin"), person("user"), person("user", "left"))
    assert holds("when: {contacts: {count: {gte: 3}}}", three)
    assert not holds("when: {contacts: {count: {gte: 3}, where: {status: active}}}", three)
    assert holds("when: {contacts: {count: 2, where: {status: active}}}", three)
    assert holds("when: {contacts: {count: {between: [1, 2]}, where: {role: user}}}", three)


def test_contact_columns_are_typed_like_account_fields() -> None:
    stale = person("admin", last_login_at=NOW - timedelta(days=9))
    fresh = person("admin", last_login_at=NOW - timedelta(days=1))
    text = "when: {contacts: {any: {last_login_at: {older_than: 7d}}}}"
    assert holds(text, account(fresh, stale)) and not holds(text, account(fresh))
    assert not holds(text, account(person("admin")))  # missing: false, as for account fields


def test_records_loaded_without_their_contacts_fail_loudly_rather_than_look_empty() -> None:
    cond, _ = parse("when: {contacts: {none: {role: billing}}}")
    with pytest.raises(ValueError, match="not loaded"):
        evaluation.evaluate(cond, {"id": "A"}, NOW, UTC_ZONE)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("when:\n  contacts: {some: {role: admin}}\n", 2, "contacts takes {any: CONDITION}"),
    ("when:\n  contacts:\n    any: {rol: admin}\n", 3, "unknown field 'rol'"),
    ("when:\n  contacts:\n    count: {gte: lots}\n", 3, "expected an integer"),
    ("when:\n  contacts:\n    any: {role: {changed: true}}\n", 3, "changes are tracked for account fields only"),
    ("when:\n  contacts:\n    any: {contacts: {any: {role: x}}}\n", 3, "not here"),
    ("when:\n  contacts: {any: {role: admin}, where: {role: user}}\n", 2, "unknown key 'where'"),
])
def test_problems_say_where_and_why(text: str, line: int, fragment: str) -> None:
    _, problems = parse(text)
    assert len(problems) == 1, problems
    assert problems[0].line == line and fragment in problems[0].message, problems


def test_explain_says_how_many_contacts_match() -> None:
    cond, _ = parse("when: {contacts: {any: {role: billing}}}")
    tree = evaluation.explain(cond, account(person("billing"), person("admin")), NOW, UTC_ZONE)
    assert tree.result and tree.lines() == ["✓ contacts any role eq billing (actual: 1 of 2 contacts match)"]


CONDITIONS = [
    "when: {contacts: {any: {role: billing, status: active}}}",
    "when: {all: [{arr: {gte: 1000}}, {contacts: {none: {role: admin}}}]}",
    "when: {any: [{contacts: {count: {gte: 2}, where: {status: active}}}, {plan: basic}]}",
    "when: {not: {contacts: {any: {last_login_at: {within_last: 7d}}}}}",
]


def _random_account(rng: random.Random, i: int) -> dict[str, Any]:
    people = [person(rng.choice(["admin", "billing", "user"]), rng.choice(["active", "left"]),
                     **({"last_login_at": NOW - timedelta(days=rng.randint(0, 20))} if rng.random() < 0.7 else {}))
              for _ in range(rng.randint(0, 4))]
    return {**account(*people), "id": f"A{i:03d}", "arr": rng.choice([500, 5000]),
            "plan": rng.choice(["basic", "pro"])}


def test_the_rules_engine_agrees_with_the_reference_on_contact_conditions() -> None:
    rules = [(f"r{i}", parse(text)[0]) for i, text in enumerate(CONDITIONS)]
    rng = random.Random(7)
    records = [_random_account(rng, i) for i in range(200)]
    expected = {r["id"]: frozenset(rid for rid, cond in rules if evaluation.evaluate(cond, r, NOW, UTC_ZONE))
                for r in records}
    with RuleEngine(rules, UTC_ZONE, batch_size=37) as engine:
        found = dict(engine.match(records, NOW))
        assert engine.failures == []
    assert {k: v for k, v in found.items() if v} == {k: v for k, v in expected.items() if v}
    assert any(expected.values()) and not all(expected.values())
