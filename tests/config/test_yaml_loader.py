"""YAML as playbooks, config.yaml and front matter are read: YAML 1.2 core-schema scalars, with positions."""

from __future__ import annotations

import math
from datetime import date

import pytest

from playbookd.config.yaml_loader import parse_yaml


def _value(text: str) -> object:
    doc, problems = parse_yaml(f"v: {text}\n", "x.yaml")
    assert problems == [] and doc is not None
    return doc.data["v"]


@pytest.mark.parametrize("text", ["no", "yes", "on", "off", "y", "n", "No", "OFF"])
def test_only_true_and_false_are_booleans(text: str) -> None:
    assert _value(text) == text


@pytest.mark.parametrize(("text", "value"), [("true", True), ("True", True), ("TRUE", True), ("false", False),
                                             ("False", False), ("FALSE", False)])
def test_true_and_false_in_every_core_spelling(text: str, value: bool) -> None:
    assert _value(text) is value


@pytest.mark.parametrize(("text", "value"), [("010", 10), ("0o10", 8), ("0x1F", 31), ("-5", -5), ("+3", 3),
                                             ("1:30", "1:30"), ("1_000", "1_000")])
def test_integers_are_decimal_unless_marked(text: str, value: object) -> None:
    assert _value(text) == value


def test_floats_dates_and_nulls() -> None:
    assert _value("1.5") == 1.5 and _value(".5") == 0.5 and _value("1e3") == 1000.0
    assert _value(".inf") == math.inf and math.isnan(_value(".nan"))  # type: ignore[arg-type]
    assert _value("2026-01-01") == date(2026, 1, 1)
    assert _value("~") is None and _value("null") is None


def test_a_condition_on_a_yes_no_column_keeps_its_words() -> None:
    doc, _ = parse_yaml("when: {usage_fit: {in: [no, investigate]}}\n", "p.yaml")
    assert doc is not None and doc.data == {"when": {"usage_fit": {"in": ["no", "investigate"]}}}
    assert doc.where(("when", "usage_fit", "in", 0)) == (1, 25)


def test_aliases_are_refused_where_they_are_so_a_billion_laughs_costs_nothing() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    doc, problems = parse_yaml("\n".join(levels) + "\n", "bomb.yaml")
    assert doc is None
    assert [str(p) for p in problems] == [
        "bomb.yaml:2:8: invalid YAML: aliases (*name) are not supported: write the value out"]
