"""A full evaluation of 20 playbooks: ten whose triggers SQL can pre-filter, ten it cannot.

    python bench/evaluation.py                       # 100,000 accounts
    python bench/evaluation.py --accounts 1000000    # the target: at most 30 s, 1 GB per group
    python bench/evaluation.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

The sample data is synced once; then each group of playbooks is evaluated over every account in a
child process of its own (seconds and peak memory, rules-engine workers included), with the store's
pre-filter and, as `--without` asks, without it. Measured: a full evaluation's work (the candidates
and every account's next due time; `seconds`), then the candidates alone as simulate reads them
(`simulate_seconds`: there the pre-filter reads only the accounts SQL lets through). The enrollments
are not written, so each run sees the same store.
The reference, in the same run: plain SQL full scans of the 20 comparable conditions (one COUNT
each) on the same accounts table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import NOW, STEPS, peak_mb, prepare, private_schema, shown

# (trigger, reference SQL over the accounts table: T(f) a field's text, N(f) its number, D(f) its date
# text, NOW the evaluation's moment as ISO text)
SQL_GROUP = {
    "big-idle": ("{all: [{arr: {gte: 100000}}, {last_login_at: {older_than: 30d}}]}",
                 "N(arr) >= 100000 AND D(last_login_at) < date(NOW, '-30 days')"),
    "starter-low-use": ("{all: [{plan: {in: [starter]}}, {seat_utilization: {lt: 20}}]}",
                        "T(plan) IN ('starter') AND N(seat_utilization) < 20"),
    "renewal-30d": ("{renewal_date: {within_next: 30d}}",
                    "D(renewal_date) BETWEEN date(NOW) AND date(NOW, '+30 days')"),
    "active-detractor": ("{all: [{status: active}, {nps: {lte: 3}}]}", "T(status) = 'active' AND N(nps) <= 3"),
    "escalated-high": ("{all: [{open_escalations: {gte: 3}}, {segment: {in: [high_touch]}}]}",
                       "N(open_escalations) >= 3 AND segment IN ('high_touch')"),
    "adopted-unhealthy": ("{all: [{health: {lt: 30}}, {lifecycle_stage: adopted}]}",
                          "N(health) < 30 AND T(lifecycle_stage) = 'adopted'"),
    "new-this-week": ("{signup_date: {within_last: 7d}}", "D(signup_date) >= date(NOW, '-7 days')"),
    "emea-mid": ("{all: [{region: EMEA}, {arr: {between: [50000, 60000]}}]}",
                 "T(region) = 'EMEA' AND N(arr) BETWEEN 50000 AND 60000"),
    "many-seats": ("{seats_used: {gt: 500}}", "N(seats_used) > 500"),
    "zero-or-sick": ("{any: [{nps: {eq: 0}}, {health: {lte: 5}}]}", "N(nps) = 0 OR N(health) <= 5"),
}
OTHER_GROUP = {
    "name-regex": ("{name: {matches: '^(Acme|Globex)'}}", "T(name) LIKE 'Acme%' OR T(name) LIKE 'Globex%'"),
    "pooled-regex": ("{all: [{csm_email: {matches: '^pooled'}}, {health: {lt: 40}}]}",
                     "T(csm_email) LIKE 'pooled%' AND N(health) < 40"),
    "turned-red": ("{all: [{health_color: {changed_to: red}}, {status: active}]}",
                   "json_extract(changes, '$.health_color') IS NOT NULL AND T(status) = 'active'"),
    "nps-changed": ("{nps: {changed: true}}", "json_extract(changes, '$.nps') IS NOT NULL"),
    "many-users": ("{contacts: {count: {gte: 3}, where: {role: user}}}", "N(contacts_active) >= 3"),
    "no-admin": ("{contacts: {none: {role: admin}}}", "N(contacts_active) = 0"),
    "score-dropped": ("{health_score: {dropped_by: {points: 15, within: 30d}}}", "N(health_score) < 30"),
    "score-rose": ("{health_score: {rose_by: {points: 20, within: 30d}}}", "N(health_score) > 90"),
    "enterprise-or-ltd": ("{any: [{plan: enterprise}, {name: {matches: 'Ltd$'}}]}",
                          "T(plan) = 'enterprise' OR T(name) LIKE '%Ltd'"),
    "not-adopted": ("{all: [{not: {lifecycle_stage: {in: [adopted, expanding]}}}, {arr: {gte: 200000}}]}",
                    "COALESCE(T(lifecycle_stage), '') NOT IN ('adopted', 'expanding') AND N(arr) >= 200000"),
}
GROUPS = {"sql": SQL_GROUP, "other": OTHER_GROUP}


def write_group(workdir: Path, config_path: Path, group: str) -> Path:
    """A config of its own whose playbooks folder holds only the group's playbooks."""
    folder = workdir / f"playbooks-{group}"
    folder.mkdir()
    for pid, (trigger, _) in GROUPS[group].items():
        (folder / f"{pid}.yaml").write_text(f"id: {pid}\nstatus: live\ntrigger: {{when: {trigger}}}\n{STEPS}")
    text = config_path.read_text().replace("playbooks: playbooks/", f"playbooks: {folder.name}/")
    path = workdir / f"config-{group}.yaml"
    path.write_text(text)
    return path


def reference_sql(template: str, dialect: str) -> str:
    import re

    if dialect == "postgresql":
        subs = {"T": r"(data->>'\1')", "N": r"(CASE WHEN json_typeof(data->'\1') = 'number' "
                r"THEN (data->>'\1')::numeric END)", "D": r"substr(data->>'\1', 1, 10)"}
        template = template.replace("json_extract(changes, '$.", "(changes->>'").replace("')", "')")
        template = re.sub(r"date\(NOW, '([-+]\d+) days'\)", r"to_char(:now::timestamptz + interval '\1 days', "
                          r"'YYYY-MM-DD')", template)
        template = template.replace("date(NOW)", "to_char(:now::timestamptz, 'YYYY-MM-DD')")
    else:
        subs = {"T": r"json_extract(data, '$.\1')", "N": r"json_extract(data, '$.\1')",
                "D": r"substr(json_extract(data, '$.\1'), 1, 10)"}
        template = template.replace("NOW", ":now")
    for name, sub in subs.items():
        template = re.sub(name + r"\((\w+)\)", sub, template)
    return f"SELECT count(*) FROM accounts WHERE {template}"


def stage_reference(config_path: Path) -> dict[str, float]:
    from sqlalchemy import text

    from playbookd.config.settings import load_config
    from playbookd.store.database import connect

    engine = connect(load_config(config_path).database)
    result: dict[str, float] = {}
    with engine.connect() as conn:
        for group, playbooks in GROUPS.items():
            started = time.perf_counter()
            matched = 0
            for _, template in playbooks.values():
                matched += conn.execute(text(reference_sql(template, engine.dialect.name)),
                                        {"now": NOW.isoformat()}).scalar_one()
            result[f"{group}_seconds"] = time.perf_counter() - started
            result[f"{group}_matched"] = matched
    return result


def stage_evaluate(config_path: Path, workers: int | None, prefilter: bool) -> dict[str, float]:
    from sqlalchemy import func, select

    from playbookd import runtime
    from playbookd.config.settings import load_config
    from playbookd.engine import enroll
    from playbookd.engine import scope as S
    from playbookd.engine.ledger import Ledger
    from playbookd.store.database import connect
    from playbookd.store.schema import accounts

    config = load_config(config_path)
    config.evaluation.prefilter = prefilter
    engine = connect(config.database)
    rt = runtime.load(config=config, engine=engine)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
    started = time.perf_counter()
    ledger = Ledger(S.due_times(rt, rt.playbooks), NOW)
    found = sum(1 for _ in enroll.candidates(rt, engine, NOW, workers=workers, scope=S.FULL, ledger=ledger))
    seconds = time.perf_counter() - started
    started = time.perf_counter()  # as simulate reads: no due times, so the pre-filter applies
    alone = sum(1 for _ in enroll.candidates(rt, engine, NOW, workers=workers))
    simulate = time.perf_counter() - started
    assert alone == found, f"{alone} candidates without the due times, {found} with them"
    return {"accounts": total, "candidates": found, "dues": len(ledger.seen), "seconds": seconds,
            "accounts_per_s": total / seconds, "simulate_seconds": simulate}


def child(args: argparse.Namespace) -> dict[str, float]:
    if args.stage == "reference":
        result = stage_reference(args.config)
    else:
        result = stage_evaluate(args.config, args.workers, args.stage == "prefilter")
    result["peak_mb"] = peak_mb()
    return result


def run_child(stage: str, config_path: Path, workers: int | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--stage", stage, "--config", str(config_path)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="rules-engine worker processes")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--without", action="store_true", help="also evaluate each group without the pre-filter")
    parser.add_argument("--keep", type=Path, help="an empty folder to keep the synced store in (SQLite), or one "
                        "a run with --keep filled: its store is evaluated again, --accounts ignored")
    parser.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(child(args)))
        return
    from playbookd.config.settings import load_config
    from playbookd.store.database import connect
    from playbookd.sync.run import sync

    with tempfile.TemporaryDirectory(prefix="playbookd-bench-") as tmp, private_schema(args.database) as database:
        workdir = args.keep or Path(tmp)
        config_path = workdir / "config.yaml"
        if not config_path.exists():
            started = time.perf_counter()
            config_path = prepare(workdir, args.accounts, database or f"sqlite:///{workdir}/bench.db")
            shutil.rmtree(workdir / "playbooks")
            (workdir / "playbooks").mkdir()
            sync(connect(load_config(config_path).database), load_config(config_path), now=NOW)
            print(f"generated and synced {args.accounts:,} accounts in {time.perf_counter() - started:.1f}s")
        reference = run_child("reference", config_path, None)
        print("reference " + "  ".join(f"{k}={shown(k, v)}" for k, v in reference.items()), flush=True)
        results: dict[str, Any] = {"reference": reference}
        stages = ("prefilter", "full") if args.without else ("prefilter",)
        for group in GROUPS:
            group_config = workdir / f"config-{group}.yaml"
            if not group_config.exists():
                write_group(workdir, config_path, group)
            for stage in stages:
                result = run_child(stage, group_config, args.workers)
                result["ratio"] = result["seconds"] / reference[f"{group}_seconds"]
                result["simulate_ratio"] = result["simulate_seconds"] / reference[f"{group}_seconds"]
                results[f"{group}_{stage}"] = result
                print(f"{group:5} {stage:9} " + "  ".join(f"{k}={shown(k, v)}" for k, v in result.items()),
                      flush=True)
        if args.json:
            print(json.dumps(results))


if __name__ == "__main__":
    main()
