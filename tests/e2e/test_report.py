"""`playbookd report` through the CLI on SQLite and PostgreSQL, against a hand-built population whose
groups and conversions are known: control and two variants, conversions, goals met at entry, an
unsubscribe and a complaint. Counts must match exactly, the p-value must be scipy's own."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import json_lines, playbookd, small_project
from scipy.stats import binomtest, chi2_contingency
from sqlalchemy import insert, select

from playbookd.store.database import connect
from playbookd.store.schema import outbox, suppressions

T0, T1 = "2026-03-02T15:00:00+00:00", "2026-03-04T15:00:00+00:00"
N = 240
TRIAL = """\
id: trial
category: product_tips
trigger: {when: {status: active}}
control: 20%
steps:
  - email:
      to: admin
      variants:
        short: {template: login_nudge_short, weight: 50}
        long: {template: login_nudge_long, weight: 50}
  - wait: 7d
  - task: {title: "call {{ account.name }}", assign: csm}
goal: {when: {plan: pro}, within: 30d}
"""
PLAIN = """\
id: plain
trigger: {when: {status: active}}
steps:
  - email: {template: login_nudge, to: admin}
"""
HEADER = "id,name,annual_revenue,status,plan,lifecycle_stage,csm_email\n"
CONTACTS = "account_id,email,first_name,role,status,is_primary\n" + "".join(
    f"ACC-{i:03d},admin{i}@example.com,Ana,admin,active,true\n" for i in range(N))


def _point(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def reference_group(account: str) -> str:
    """The README's rule, written out independently of playbookd: a uniform point from the hash of
    (playbook, account) under the control share; else the weighted variant of the sticky pick."""
    if _point("control", "trial", account) / 2**64 < 0.2:
        return "control"
    return "short" if _point("trial", account) % 100 < 50 else "long"


def accounts_csv(pro: set[str]) -> str:
    rows = [f"ACC-{i:03d},Account {i},{50000 if i % 2 else 5000},active,{'pro' if f'ACC-{i:03d}' in pro else 'basic'},"
            f"adopted,maria@acme.example\n" for i in range(N)]
    return HEADER + "".join(rows)


class Population:
    """Who is in which group, who had met the goal at entry, who converts after entry."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {"control": [], "short": [], "long": []}
        for i in range(N):
            self.groups[reference_group(f"ACC-{i:03d}")].append(f"ACC-{i:03d}")
        at_entry = {"control": 2, "short": 3, "long": 0}
        converts = {"control": 4, "short": 9, "long": 30}
        self.at_entry = {g: set(ids[:at_entry[g]]) for g, ids in self.groups.items()}
        self.converts = {g: set(ids[at_entry[g]:at_entry[g] + converts[g]]) for g, ids in self.groups.items()}

    def pro_at_entry(self) -> set[str]:
        return set().union(*self.at_entry.values())

    def pro_later(self) -> set[str]:
        return self.pro_at_entry() | set().union(*self.converts.values())

    def measured(self, group: str) -> tuple[int, int]:
        """(converted, measured) of a group."""
        return len(self.converts[group]), len(self.groups[group]) - len(self.at_entry[group])


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, Population]]:
    population = Population()
    assert all(n - len(population.at_entry[g]) >= 30 for g, n in
               ((g, len(ids)) for g, ids in population.groups.items())), "each group needs 30 measured"
    path = small_project(tmp_path, accounts_csv(population.pro_at_entry()), CONTACTS,
                         {"trial": TRIAL}, database=db_url,
                         evaluation={"workers": 0})
    first = playbookd("run", "--once", "--at", T0, cwd=path)
    assert first.returncode == 0, first.stderr
    engine = connect(db_url)
    with engine.begin() as conn:  # one recipient per variant unsubscribes, one complains, after their email
        sent = {r.account_id: r for r in conn.execute(select(outbox).where(outbox.c.playbook_id == "trial"))}
        short, long = population.groups["short"][5], population.groups["long"][7]
        conn.execute(insert(suppressions), [
            {"email": sent[short].to_addr, "category": "product_tips", "reason": "unsubscribed",
             "created_at": sent[short].sent_at},
            {"email": sent[long].to_addr, "category": "*", "reason": "complaint", "created_at": sent[long].sent_at}])
    engine.dispose()
    (path / "data" / "accounts.csv").write_text(accounts_csv(population.pro_later()))
    second = playbookd("run", "--once", "--at", T1, cwd=path)
    assert second.returncode == 0, second.stderr
    yield path, population


def newcombe(met_a: int, n_a: int, met_b: int, n_b: int) -> tuple[float, float]:
    """Newcombe's method 10 from scipy's Wilson intervals, as his paper writes it."""
    ci_a = binomtest(met_a, n_a).proportion_ci(method="wilson")
    ci_b = binomtest(met_b, n_b).proportion_ci(method="wilson")
    p_a, p_b = met_a / n_a, met_b / n_b
    return (p_a - p_b - math.hypot(p_a - ci_a.low, ci_b.high - p_b),
            p_a - p_b + math.hypot(ci_a.high - p_a, p_b - ci_b.low))


def test_the_report_matches_the_population_exactly(project: tuple[Path, Population]) -> None:
    path, population = project
    result = playbookd("report", "--format", "json", cwd=path)
    assert result.returncode == 0, result.stderr
    by_id = {line["playbook"]: line for line in json_lines(result.stdout)}
    assert set(by_id) == {"trial"}
    trial = by_id["trial"]

    entered = sum(len(ids) for ids in population.groups.values())
    met_at_entry = len(population.pro_at_entry())
    met = sum(len(c) for c in population.converts.values())
    assert trial["entered"] == entered == N
    assert trial["goal"]["met"] == met and trial["goal"]["met_at_entry"] == met_at_entry
    assert trial["goal"]["rate"] == met / (entered - met_at_entry)
    assert trial["goal"]["median_seconds_to_goal"] == 2 * 86400
    treated = len(population.groups["short"]) + len(population.groups["long"])
    assert trial["emails"] == {"sent": treated, "failed": 0, "skipped": {}}
    # the converted ones exited on their goal; the rest wait for the task step
    assert trial["exited"] == {"goal met": met} and trial["active"] == entered - met
    assert trial["tasks"] == {"created": 0, "done": 0}

    groups = {g["name"]: g for g in trial["groups"]}
    assert [g["name"] for g in trial["groups"]] == ["control", "long", "short"]
    for name, ids in population.groups.items():
        converted, measured = population.measured(name)
        assert (groups[name]["entered"], groups[name]["met_at_entry"], groups[name]["goal_met"]) == (
            len(ids), len(population.at_entry[name]), converted)
        assert groups[name]["rate"] == converted / measured
    assert groups["control"]["emails_sent"] == 0 and groups["control"]["unsubscribe_rate"] is None
    assert groups["short"]["unsubscribe_rate"] == 1 / len(population.groups["short"])
    assert groups["short"]["complaint_rate"] == 0
    assert groups["long"]["complaint_rate"] == 1 / len(population.groups["long"])
    assert groups["long"]["unsubscribe_rate"] == 0

    comparisons = {(c["group"], c["versus"]): c for c in trial["comparisons"]}
    assert list(comparisons) == [("long", "control"), ("short", "control"), ("long", "short")]
    for (a, b), found in comparisons.items():
        (met_a, n_a), (met_b, n_b) = population.measured(a), population.measured(b)
        assert found["lift"] == pytest.approx(met_a / n_a - met_b / n_b, abs=1e-12)
        expected = chi2_contingency([[met_a, n_a - met_a], [met_b, n_b - met_b]], correction=False).pvalue
        assert found["p_value"] == pytest.approx(expected, rel=1e-12)
        assert found["ci95"] == pytest.approx(list(newcombe(met_a, n_a, met_b, n_b)), rel=1e-9)
    assert comparisons[("long", "control")]["p_value"] < 0.05  # 30 of 90-odd against 4 of 40-odd
    filters_and_formats(path, population)


def filters_and_formats(path: Path, population: Population) -> None:
    later = json_lines(playbookd("report", "--since", T1, "--format", "json", cwd=path).stdout)
    assert later == []
    before = json_lines(playbookd("report", "--until", T1, "--playbook", "trial", "--format", "json", cwd=path).stdout)
    assert [line["entered"] for line in before] == [N]
    odd = json_lines(playbookd("report", "--segment", "low_touch", "--playbook", "trial", "--format", "json",
                               cwd=path).stdout)
    assert odd[0]["entered"] == N // 2  # odd accounts have 50,000 ARR
    short = population.groups["short"]
    odd_short = [a for a in short if int(a[-3:]) % 2]
    assert {g["name"]: g["entered"] for g in odd[0]["groups"]}["short"] == len(odd_short)

    table = playbookd("report", "--playbook", "trial", cwd=path)
    assert table.returncode == 0, table.stderr
    assert "playbook trial" in table.stdout and "95% CI" in table.stdout
    converted, measured = population.measured("long")
    assert f"{100 * converted / measured:.1f}%" in table.stdout

    rows = list(csv.DictReader(io.StringIO(playbookd("report", "--format", "csv", cwd=path).stdout)))
    groups = {(r["playbook"], r["name"]): r for r in rows if r["section"] == "group"}
    assert int(groups[("trial", "control")]["goal_met"]) == len(population.converts["control"])
    assert {r["section"] for r in rows} == {"playbook", "group", "comparison"}


def test_a_small_sample_is_not_enough_data_and_no_variants_is_treatment(tmp_path: Path) -> None:
    accounts = HEADER + "".join(f"ACC-{i:03d},A,5000,active,basic,adopted,m@acme.example\n" for i in range(20))
    contacts = "\n".join(CONTACTS.splitlines()[:21]) + "\n"
    path = small_project(tmp_path, accounts, contacts, {"trial": TRIAL, "plain": PLAIN}, evaluation={"workers": 0})
    assert playbookd("run", "--once", "--at", T0, cwd=path).returncode == 0
    plain, line = json_lines(playbookd("report", "--format", "json", cwd=path).stdout)
    assert [g["name"] for g in plain["groups"]] == ["treatment"] and plain["comparisons"] == []
    assert plain["goal"] is None and plain["completed"] == 20 and plain["groups"][0]["rate"] is None
    assert line["comparisons"] and all(c["p_value"] is None and c["lift"] is None
                                       and c["note"].startswith("not enough data") for c in line["comparisons"])

