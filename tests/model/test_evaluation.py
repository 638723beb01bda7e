from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from playbookd.model.account import account_types
from playbookd.model.conditions import TRUE, All, Any_, FieldTypes, Leaf, Not, parse_condition_data
from playbookd.model.evaluation import evaluate, explain

UTC_TZ = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
DAY = 86400
TYPES: dict[str, str | None] = {**account_types({"tags": "string", "score": "integer"})}
KNOWN = FieldTypes(TYPES, allow_events=True)


def ev(cond: Any, record: dict[str, Any], tz: ZoneInfo = UTC_TZ, now: datetime = NOW) -> bool:
    return evaluate(cond, {"id": "a", "_changes": {}, **record}, now, tz)


def parsed(data: Any) -> Any:
    cond, problems = parse_condition_data(data, "test.yaml", KNOWN)
    assert problems == []
    return cond


@pytest.mark.parametrize(("op", "value", "actual", "expected"), [
    ("eq", 5, 5.0, True), ("eq", 5, 6, False), ("eq", "5", 5, False), ("eq", True, 1, False),
    ("ne", 5, 6, True), ("ne", 5, 5, False), ("ne", "a", 5, True),
    ("gt", 5, 6, True), ("gt", 5, 5, False), ("gt", 5, "7", False), ("gte", 5, 5, True),
    ("lt", 5, 4.5, True), ("lt", 5, 5, False), ("lte", 5, 5, True), ("lte", "b", "a", True),
    ("gt", "b", "é", True), ("gt", 1, float("nan"), False),
    ("in", ("a", "b"), "b", True), ("in", ("a", "b"), "c", False), ("in", (1, "1"), 1.0, True),
    ("not_in", ("a", "b"), "c", True), ("not_in", ("a", "b"), "a", False),
    ("between", (1, 10), 10, True), ("between", (1, 10), 0, False), ("between", (1, "z"), 5, False),
    ("contains", "log", "login", True), ("contains", "x", "login", False),
    ("contains", "vip", ["vip", "beta"], True), ("contains", "vip", ["beta"], False),
    ("contains", "1", 1, False),
    ("matches", r"^acme\d+$", "acme42", True), ("matches", "cme", "acme", True),
    ("matches", "^x", "acme", False),
    ("matches", "1", 1, False),
])
def test_operators_on_present_values(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert ev(Leaf("x", op, value), {"x": actual}) is expected


@pytest.mark.parametrize(("op", "value"), [
    ("eq", 1), ("ne", 1), ("gt", 1), ("gte", 1), ("lt", 1), ("lte", 1), ("in", (1,)), ("not_in", (1,)),
    ("between", (0, 2)), ("contains", "a"), ("matches", "."), ("older_than", DAY), ("within_last", DAY),
    ("within_next", DAY), ("beyond_next", DAY), ("changed_to", 1), ("changed_from", 1),
])
def test_every_operator_but_exists_is_false_on_missing(op: str, value: Any) -> None:
    assert ev(Leaf("x", op, value), {}) is False
    assert ev(Leaf("x", op, value), {"x": None}) is False
    assert ev(Not(Leaf("x", op, value)), {}) is True


def test_exists() -> None:
    assert ev(Leaf("x", "exists", True), {"x": 0}) is True
    assert ev(Leaf("x", "exists", True), {}) is False
    assert ev(Leaf("x", "exists", False), {}) is True
    assert ev(Leaf("x", "exists", False), {"x": ""}) is False


@pytest.mark.parametrize(("op", "days_ago", "expected"), [
    ("older_than", 8, True), ("older_than", 7, False), ("older_than", 6, False),
    ("within_last", 7, True), ("within_last", 8, False), ("within_last", -3, True),
    ("within_next", -7, True), ("within_next", -8, False),
    ("within_next", 0, True), ("within_next", 1, False),
    ("beyond_next", -8, True), ("beyond_next", -7, False),
])
def test_relative_time_boundaries(op: str, days_ago: int, expected: bool) -> None:
    value = datetime.fromtimestamp(NOW.timestamp() - days_ago * DAY, UTC)
    assert ev(Leaf("t", op, 7 * DAY), {"t": value}) is expected


def test_relative_time_needs_a_temporal_value() -> None:
    assert ev(Leaf("t", "older_than", DAY), {"t": "2020-01-01"}) is False
    assert ev(Leaf("t", "older_than", DAY), {"t": 5}) is False


def test_dates_are_midnight_in_the_configured_zone() -> None:
    now = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)  # 22:00 on Nov 9 in New York
    renewal = {"renewal_date": date(2026, 11, 10)}
    # Midnight Nov 10 in New York is 05:00 UTC: still in the future at 03:00 UTC.
    assert ev(Leaf("renewal_date", "within_next", 3 * 3600), renewal, NY, now) is True
    assert ev(Leaf("renewal_date", "within_next", 3 * 3600), renewal, UTC_TZ, now) is False
    assert ev(Leaf("renewal_date", "within_last", 3 * 3600), renewal, UTC_TZ, now) is True


def test_dates_and_datetimes_compare_as_instants() -> None:
    midnight_ny = datetime(2026, 11, 10, 5, 0, tzinfo=UTC)
    assert ev(Leaf("d", "eq", date(2026, 11, 10)), {"d": midnight_ny}, NY) is True
    assert ev(Leaf("d", "eq", date(2026, 11, 10)), {"d": midnight_ny}, UTC_TZ) is False
    assert ev(Leaf("d", "lt", date(2026, 11, 11)), {"d": date(2026, 11, 10)}) is True
    naive = datetime(2026, 11, 10, 5, 0)  # naive means UTC
    assert ev(Leaf("d", "eq", naive), {"d": midnight_ny}) is True
    assert ev(Leaf("d", "gt", date(2026, 1, 1)), {"d": "2026-11-10"}) is False


def test_all_any_not() -> None:
    yes, no = Leaf("x", "eq", 1), Leaf("x", "eq", 2)
    record = {"x": 1}
    assert ev(All((yes, yes)), record) and not ev(All((yes, no)), record)
    assert ev(Any_((no, yes)), record) and not ev(Any_((no, no)), record)
    assert ev(Not(no), record) and not ev(Not(yes), record)
    assert ev(TRUE, {}) is True
    assert ev(Any_(()), {}) is False


def test_changes() -> None:
    record = {"plan": "pro", "_changes": {"plan": "basic", "status": None}}
    assert ev(Leaf("plan", "changed", True), record) is True
    assert ev(Leaf("arr", "changed", True), record) is False
    assert ev(Leaf("arr", "changed", False), record) is True
    assert ev(Leaf("plan", "changed_from", "basic"), record) is True
    assert ev(Leaf("plan", "changed_from", "pro"), record) is False
    assert ev(Leaf("plan", "changed_to", "pro"), record) is True
    assert ev(Leaf("plan", "changed_to", "basic"), record) is False
    assert ev(Leaf("status", "changed", True), record) is True  # changed to null still changed
    assert ev(Leaf("status", "changed_to", "x"), record) is False
    assert ev(Leaf("plan", "changed", True), {"plan": "pro"}) is False  # no _changes at all


def test_event_fields() -> None:
    record = {"event": {"score": 4, "name": "nps_response"}}
    assert ev(Leaf("event.score", "lte", 6), record) is True
    assert ev(Leaf("event.score", "gt", 6), record) is False
    assert ev(Leaf("event.comment", "exists", False), record) is True
    assert ev(Leaf("event.score", "lte", 6), {}) is False


def test_parsed_conditions_evaluate() -> None:
    cond = parsed({"all": [{"last_login_at": {"older_than": "7d"}},
                           {"lifecycle_stage": {"in": ["onboarding", "adopted"]}},
                           {"not": {"status": "churned"}}]})
    base = {"last_login_at": datetime(2026, 11, 1, 10, 0, tzinfo=UTC), "lifecycle_stage": "adopted"}
    assert ev(cond, base) is True
    assert ev(cond, {**base, "status": "churned"}) is False
    assert ev(cond, {**base, "last_login_at": datetime(2026, 11, 9, tzinfo=UTC)}) is False
    assert ev(parsed({"renewal_date": {"within_next": "30d"}}), {"renewal_date": date(2026, 12, 1)}) is True


def test_explain_tree_lines() -> None:
    cond = parsed({"all": [{"last_login_at": {"older_than": "7d"}}, {"not": {"status": "churned"}},
                           {"arr": {"between": [1000, 5000]}}]})
    record = {"last_login_at": datetime(2026, 11, 1, 10, 0, tzinfo=UTC), "status": "active"}
    tree = explain(cond, {"id": "a", "_changes": {}, **record}, NOW, UTC_TZ)
    assert tree.result is False and tree.kind == "all"
    assert tree.lines() == [
        "✗ all",
        "  ✓ last_login_at older_than 7d (actual: 2026-11-01T10:00:00+00:00)",
        "  ✓ not",
        "    ✗ status eq churned (actual: active)",
        "  ✗ arr between [1000, 5000] (actual: missing)",
    ]


def test_explain_dict_is_json_safe() -> None:
    cond = All((Leaf("renewal_date", "lt", date(2027, 1, 1)), Leaf("plan", "changed_from", "basic"),
                Any_((Leaf("tags", "in", ("a", "b")),))))
    record = {"id": "a", "renewal_date": date(2026, 12, 1), "plan": "pro", "_changes": {"plan": "basic"}}
    tree = explain(cond, record, NOW, UTC_TZ)
    data = tree.to_dict()
    assert json.loads(json.dumps(data)) == data
    first, second, third = data["children"]
    assert first == {"kind": "leaf", "result": True, "field": "renewal_date", "op": "lt",
                     "expected": "2027-01-01", "actual": "2026-12-01", "children": []}
    assert second["actual"] == {"changed": True, "previous": "basic", "current": "pro"}
    assert second["result"] is True
    assert third["kind"] == "any" and third["result"] is False
    assert third["children"][0]["expected"] == ["a", "b"]
    assert tree.lines()[2] == "  ✓ plan changed_from basic (previous: basic, actual: pro)"
    assert data["result"] is False


def test_matches_takes_linear_time_on_a_pattern_that_backtracks() -> None:
    # Python's re needs about 2**40 steps here; the child process stands in for the evaluation
    # that used to hang for good, and the timeout turns a hang into a failure.
    code = ("from datetime import UTC, datetime\nfrom zoneinfo import ZoneInfo\n"
            "from playbookd.model.conditions import Leaf\nfrom playbookd.model.evaluation import evaluate\n"
            "leaf = Leaf('name', 'matches', '^(a+)+$')\nnow = datetime.now(UTC)\n"
            "print(evaluate(leaf, {'id': 'x', 'name': 'a' * 40 + 'b'}, now, ZoneInfo('UTC')),"
            " evaluate(leaf, {'id': 'y', 'name': 'a' * 40}, now, ZoneInfo('UTC')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.split() == ["False", "True"], result.stderr
