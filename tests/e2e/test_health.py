"""Health scores end to end: a synced sample population scored by hand from config.yaml matches
`playbookd health --format json` exactly, and the table, breakdown and `explain` agree with it."""

from __future__ import annotations

import csv
import operator
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml
from cli_helpers import edit_config, json_lines, playbookd

OPS = {"eq": operator.eq, "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}
NUMBERS = ("annual_revenue", "seat_utilization", "nps", "open_escalations")
TENTH = Decimal("0.1")


def holds(ops: dict[str, Any], value: Any) -> bool:
    return all(OPS[op](value, limit) for op, limit in ops.items())


def measure_score(measure: dict[str, Any], row: dict[str, Any]) -> tuple[Any, Any]:
    """(value, score) of one measure, straight from the config's words; score None: left out."""
    if "when" in measure:
        ((name, ops),) = measure["when"].items()
        value = row[name]
        return value, None if value is None else measure["score"] if holds(ops, value) else measure["else"]
    value = row[measure["field"]]
    if value is None:
        return value, None
    if "map" in measure:
        return value, measure["map"].get(value)
    band = next(b for b in measure["bands"] if holds({k: v for k, v in b.items() if k != "score"}, value))
    return value, band["score"]


def by_hand(config: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    segment = next(s["name"] for s in config["segments"]
                   if "when" not in s or row["annual_revenue"] >= s["when"]["arr"]["gte"])
    found = [(m, *measure_score(m, row)) for m in config["health"]["measures"]]
    total = sum(Decimal(m["weight"]) for m, _, score in found if score is not None)
    measures = [{"name": m["name"], "value": value, "score": None if score is None else float(score),
                 "weight": float((Decimal(m["weight"]) * 100 / total).quantize(TENTH, ROUND_HALF_UP))
                 if score is not None else 0.0} for m, value, score in found]
    if not total:
        return {"account": row["id"], "segment": segment, "score": None, "color": None, "measures": measures}
    mean = sum(Decimal(m["weight"]) * Decimal(score) for m, _, score in found if score is not None) / total
    score = mean.quantize(TENTH, ROUND_HALF_UP)
    limits = config["health"]["colors"].get(segment, config["health"]["colors"]["default"])
    color = "red" if holds(limits["red"], score) else "yellow" if holds(limits["yellow"], score) else "green"
    return {"account": row["id"], "segment": segment, "score": float(score), "color": color, "measures": measures}


def population(project: Path) -> list[dict[str, Any]]:
    with (project / "data" / "accounts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{**row, **{n: int(row[n]) if row[n] else None for n in NUMBERS},
             "usage_fit": row["usage_fit"] or None} for row in rows]


def test_a_synced_population_scored_by_hand_matches_health_json(tmp_path: Path, db_url: str) -> None:
    assert playbookd("init", "project", "--accounts", "300", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    edit_config(project, database=db_url)
    rows = population(project)
    extra = dict(rows[0], id="ACC-NODATA", seat_utilization=None, nps=None, open_escalations=None, usage_fit=None)
    with (project / "data" / "accounts.csv").open("a", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow(["" if v is None else v for v in extra.values()])
    synced = playbookd("sync", cwd=project)
    assert synced.returncode == 0, synced.stderr
    assert "health: 301 account(s) scored, 0 moved" in synced.stdout

    config = yaml.safe_load((project / "config.yaml").read_text())
    expected = sorted((by_hand(config, row) for row in [*rows, extra]), key=lambda e: e["account"])
    result = playbookd("health", "--format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == expected
    colors = Counter((e["segment"], e["color"]) for e in expected)
    assert {s for s, c in colors if c == "red"} == {"high_touch", "low_touch", "tech_touch"}, colors
    assert expected[-1]["score"] is None and expected[-1]["color"] is None  # ACC-NODATA sorts last

    high = playbookd("health", "--format", "json", "--segment", "high_touch", cwd=project)
    assert json_lines(high.stdout) == [e for e in expected if e["segment"] == "high_touch"]
    table = playbookd("health", cwd=project).stdout.splitlines()
    for segment in ("high_touch", "low_touch", "tech_touch"):
        counts = [colors[(segment, c)] for c in ("red", "yellow", "green", None)]
        assert f"{segment}  " in table[["high_touch", "low_touch", "tech_touch"].index(segment) + 1]
        assert table[["high_touch", "low_touch", "tech_touch"].index(segment) + 1].split()[1:] == [
            str(n) for n in [*counts, sum(counts)]]


def test_one_account_breakdown_in_health_and_explain(tmp_path: Path) -> None:
    assert playbookd("init", "project", "--accounts", "40", cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    assert playbookd("sync", cwd=project).returncode == 0
    (line,) = json_lines(playbookd("health", "--format", "json", "--account", "ACC-000002", cwd=project).stdout)
    shown = playbookd("health", "--account", "ACC-000002", cwd=project).stdout
    assert f"health {line['score']}, {line['color']}" in shown
    for m in line["measures"]:
        assert any(row.split()[:1] == [m["name"]] and f"{m['weight']}%" in row for row in shown.splitlines())
    explained = playbookd("explain", "ACC-000002", cwd=project).stdout
    assert f"Health {line['score']} ({line['color']})" in explained
    missing = playbookd("health", "--account", "ACC-999", cwd=project)
    assert missing.returncode == 1 and "'ACC-999' is not in the store" in missing.stderr
    typo = playbookd("health", "--segment", "high_tuch", cwd=project)
    assert typo.returncode == 1 and "did you mean 'high_touch'?" in typo.stderr
