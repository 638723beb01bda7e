"""A bad health section, reserved field names, and trend conditions are refused at start, with their place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli_helpers import ROOT, small_project
from cycle_helpers import ACCOUNTS, CONTACTS

from playbookd import runtime
from playbookd.config.settings import load_config
from playbookd.errors import ValidationError

BASE = """\
company: {name: Acme, postal_address: "1 Main St"}
segments:
  - {name: high_touch, when: {arr: {gte: 100000}}}
  - {name: tech_touch}
"""
GOOD_MEASURE = "    - {name: support, weight: 20, field: open_escalations, bands: [{eq: 0, score: 100}, {score: 0}]}\n"
GOOD_COLORS = "  colors:\n    default: {red: {lt: 40}, yellow: {lt: 70}}\n"


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + text)
    with pytest.raises(ValidationError) as info:
        load_config(path)
    return str(info.value).replace(str(path), "config.yaml")


@pytest.mark.parametrize(("section", "expected"), [
    ("health:\n  measures:\n    - {name: a, weight: 1, feild: nps, bands: [{score: 1}]}\n" + GOOD_COLORS,
     "config.yaml:7:35: unknown key 'health.measures.0.feild'; did you mean 'field'?"),
    ("health:\n  measures:\n    - {name: s, weight: 1, when: {nps: {gte: 9}}, score: 100}\n" + GOOD_COLORS,
     "config.yaml:7:7: health.measures.0: measure s: a when measure takes score and else, and no field"),
    ("health:\n  measures:\n    - {name: a, weight: 1, field: nps, bands: [{gte: 9, score: 100}, {lt: 9, score: 1}]}\n"
     + GOOD_COLORS, "measure a: the last band has no operator: it scores every value the bands before it do not "
     "match"),
    ("health:\n  measures:\n    - {name: a, weight: 1, field: nps, bands: [{score: 1}, {gte: 9, score: 100}]}\n"
     + GOOD_COLORS, "measure a: band 1 has no operator, so the bands after it are never used"),
    ("health:\n  measures:\n    - {name: a, weight: 0, field: nps, map: {1: 10}}\n" + GOOD_COLORS,
     "config.yaml:7:25: health.measures.0.weight: Input should be greater than 0"),
    ("health:\n  measures:\n" + GOOD_MEASURE + GOOD_MEASURE + GOOD_COLORS,
     "measure name(s) support used more than once"),
    ("health:\n  measures:\n" + GOOD_MEASURE + "  colors:\n    high_touch: {red: {lt: 60}, yellow: {lt: 80}}\n",
     "config.yaml:9:5: health.colors: no limits for segment(s) tech_touch: list them or add `default`"),
    ("health:\n  measures:\n" + GOOD_MEASURE + GOOD_COLORS + "    hihg_touch: {red: {lt: 60}, yellow: {lt: 80}}\n",
     "config.yaml:10:17: health.colors: unknown segment 'hihg_touch'; segments are high_touch, tech_touch"),
    ("health:\n  measures:\n" + GOOD_MEASURE + "  colors:\n    default: {red: {below: 40}, yellow: {lt: 70}}\n",
     "config.yaml:9:28: unknown key 'health.colors.default.red.below'; known keys: lt, lte, gt, gte"),
    ("custom_fields: {health_rank: integer, globals: string}\n",
     "config.yaml:5:30: custom_fields: 'health_rank' is a reserved name: health_* fields are computed"),
    ("sources:\n  - {name: crm, kind: csv, entity: accounts, path: a.csv, fields: {contacts: people}}\n",
     "config.yaml:6:78: sources.0.fields: 'contacts' is a reserved name"),
])
def test_a_bad_health_section_or_a_reserved_name_is_refused_where_it_is(tmp_path: Path, section: str,
                                                                        expected: str) -> None:
    assert expected in refused(tmp_path, section)


def test_both_reserved_custom_fields_are_reported(tmp_path: Path) -> None:
    text = refused(tmp_path, "custom_fields: {health_rank: integer, globals: string}\n")
    assert "'health_rank' is a reserved name" in text and "'globals' is a reserved name" in text


def build_problems(tmp_path: Path, playbooks: dict[str, str], **config: object) -> list[str]:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, playbooks, **config)
    _, found = runtime.build(load_config(project / "config.yaml"), None)
    return [f"{Path(p.file).name}:{p.line}:{p.col}: {p.message}" for p in found]


def shipped_health() -> dict[str, object]:
    health = yaml.safe_load((ROOT / "config.yaml").read_text())["health"]
    assert isinstance(health, dict)
    return health


def test_a_measure_naming_an_unknown_field_is_located_in_config_yaml(tmp_path: Path) -> None:
    health = shipped_health()
    health["measures"][0]["field"] = "seat_utilisation"  # type: ignore[index]
    found = build_problems(tmp_path, {}, health=health)
    assert found == ["config.yaml:31:12: measure adoption: unknown field 'seat_utilisation'; did you mean "
                     "'seat_utilization'? (fields come from the well-known list, sources, custom_fields and the store)"]


def test_the_shipped_health_section_is_valid_and_makes_health_fields_known(tmp_path: Path) -> None:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {})
    loaded = runtime.load(config=load_config(project / "config.yaml"))
    assert loaded.health is not None and [m.name for m in loaded.health.measures] == [
        "adoption", "sentiment", "support", "csm_view"]
    assert loaded.types["health_score"] == "decimal" and loaded.types["health_color"] == "string"


PAINT = """\
id: paint
trigger: {when: {status: active}}
steps:
  - set: {health_color: red, risk_flag: painted}
"""
TREND = """\
id: trend
trigger:
  when: {all: [{nps: {dropped_by: {points: 2, within: 30d}}}, {health_score: {rose_by: {points: 5, within: 2y}}}]}
steps:
  - task: {title: "look", assign: csm}
"""


def test_a_set_step_cannot_write_a_computed_field(tmp_path: Path) -> None:
    assert build_problems(tmp_path, {"paint": PAINT}) == [
        "paint.yaml:4:25: set: 'health_color' is a reserved name: health_* fields are computed from config.yaml's "
        "health section; a step cannot write it"]


def test_trends_work_on_health_score_within_the_history_kept(tmp_path: Path) -> None:
    assert build_problems(tmp_path, {"trend": TREND}) == [
        "trend.yaml:3:35: 'dropped_by' works on health_score, the one field whose history playbookd keeps",
        "trend.yaml:3:88: health_score rose_by: the window is longer than the 400 days of history kept "
        "(health.history_days)"]


def test_without_a_health_section_health_score_is_unknown(tmp_path: Path) -> None:
    project = small_project(tmp_path, ACCOUNTS, CONTACTS, {"trend": TREND})
    config = yaml.safe_load((project / "config.yaml").read_text())
    del config["health"]
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    _, found = runtime.build(load_config(project / "config.yaml"), None)
    assert any("unknown field 'health_score'" in p.message for p in found)
