"""Throughput and memory: sync rows/s, evaluation accounts/s (10 playbooks), delivery messages/s.

    python bench/run.py                      # 100,000 accounts
    python bench/run.py --accounts 1000000   # the 1 GB memory target
    python bench/run.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Each stage runs in a fresh child process so its peak memory (parent plus rules-engine
workers) is measured on its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
EXTRA_PLAYBOOKS = {
    "health-drop": "trigger: {when: {all: [{health: {lt: 40}}, {status: active}]}}\n",
    "high-arr-no-login": "trigger: {when: {all: [{arr: {gte: 50000}}, {last_login_at: {older_than: 14d}}]}}\n",
    "renewal-soon": "trigger: {when: {renewal_date: {within_next: 30d}}}\n",
}
STEPS = "steps:\n  - email: {template: login_nudge, to: primary}\n"


def peak_mb() -> float:
    from playbookd.engine.rules import close_idle

    close_idle()  # the rules-engine workers kept for a next evaluation: reaped, their peak counts
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def prepare(workdir: Path, accounts: int, database: str) -> Path:
    from playbookd.cli import sampledata

    for name in ("playbooks", "email_templates"):
        shutil.copytree(ROOT / name, workdir / name)
    for name, trigger in EXTRA_PLAYBOOKS.items():
        (workdir / "playbooks" / f"{name}.yaml").write_text(f"id: {name}\n{trigger}{STEPS}")
    sampledata.write_sample(workdir / "data", accounts, NOW)
    config = (ROOT / "config.yaml").read_text().replace("sqlite:///playbookd.db", database)
    (workdir / "config.yaml").write_text(config)
    return workdir / "config.yaml"


def stage_sync(config_path: Path) -> dict[str, float]:
    """A first sync (every row new), a second one of the same files (every row unchanged), and the
    reference: a plain executemany INSERT of as many rows of the same data into a scratch table."""
    from playbookd.config.settings import load_config
    from playbookd.store.database import connect
    from playbookd.sync.run import sync

    config = load_config(config_path)
    engine = connect(config.database)
    result: dict[str, float] = {}
    for name in ("first", "again"):
        started = time.perf_counter()
        report = sync(engine, config, now=NOW)
        seconds = time.perf_counter() - started
        rows = sum(s.read for s in report.sources)
        result.update({"rows": rows, f"{name}_seconds": seconds, f"{name}_rows_per_s": rows / seconds})
    reference = reference_rows_per_s(engine, int(result["rows"]))
    result.update(reference_rows_per_s=reference, first_ratio=result["first_rows_per_s"] / reference,
                  again_ratio=result["again_rows_per_s"] / reference)
    return result


def reference_rows_per_s(engine: Any, rows: int) -> float:
    """What the database takes without playbookd: the synced accounts' JSON inserted as it is."""
    from sqlalchemy import JSON, Column, MetaData, String, Table, select

    from playbookd.store.schema import accounts

    scratch = Table("bench_reference", MetaData(), Column("id", String(200), primary_key=True),
                    Column("data", JSON, nullable=False))
    scratch.drop(engine, checkfirst=True)
    scratch.create(engine)
    with engine.connect() as conn:
        sample = [r.data for r in conn.execute(select(accounts.c.data).limit(10_000))]
    batch = [{"id": f"R{i:09d}", "data": sample[i % len(sample)]} for i in range(rows)]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(scratch.insert(), batch)
    seconds = time.perf_counter() - started
    scratch.drop(engine)
    return rows / seconds


def stage_evaluate(config_path: Path, workers: int | None) -> dict[str, float]:
    from sqlalchemy import func, select

    from playbookd import runtime
    from playbookd.config.settings import load_config
    from playbookd.engine import enroll
    from playbookd.store.database import connect
    from playbookd.store.schema import accounts

    config = load_config(config_path)
    engine = connect(config.database)
    rt = runtime.load(config=config, engine=engine)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(accounts)).scalar_one()
    started = time.perf_counter()
    matched = sum(1 for _ in enroll.candidates(rt, engine, NOW, workers=workers))
    seconds = time.perf_counter() - started
    state_playbooks = [p for p in rt.active if p.event is None]  # event playbooks do not scan accounts
    return {"accounts": total, "playbooks": len(state_playbooks), "candidates": matched, "seconds": seconds,
            "accounts_per_s": total / seconds}


def stage_deliver(accounts: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_delivery.py"), "--accounts", str(accounts),
                          "--json"], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def child(stage: str, args: argparse.Namespace, config_path: Path) -> dict[str, float]:
    if stage == "sync":
        result = stage_sync(config_path)
    elif stage == "evaluate":
        result = stage_evaluate(config_path, args.workers)
    else:
        result = stage_deliver(args.delivery_accounts)
    result["peak_mb"] = peak_mb()
    return result


def run_stage(stage: str, argv: list[str], config_path: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, *argv, "--stage", stage, "--config", str(config_path)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def shown(key: str, value: float) -> str:
    if not isinstance(value, float):
        return f"{value:,}"
    return f"{value:.2f}" if key.endswith("ratio") else f"{value:,.1f}"


STAGES = ("sync", "evaluate", "deliver")


@contextmanager
def private_schema(url: str | None) -> Iterator[str | None]:
    """A PostgreSQL URL pointed at a schema of the bench's own, dropped afterwards: a run starts
    empty (the first sync really is first) and leaves nothing behind in a shared database."""
    if url is None or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--delivery-accounts", type=int, default=3_000,
                        help="sample accounts whose first emails are rendered and sent over SMTP")
    parser.add_argument("--workers", type=int, default=None, help="rules-engine worker processes")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--stages", default="sync,evaluate,deliver",
                        help="comma-separated stages to run (default: all three)")
    parser.add_argument("--json", action="store_true", help="last line: every stage's figures as one JSON object")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(child(args.stage, args, args.config)))
        return
    stages = args.stages.split(",")
    if unknown := [s for s in stages if s not in STAGES]:
        parser.error(f"unknown stage {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    with tempfile.TemporaryDirectory(prefix="playbookd-bench-") as tmp, \
            private_schema(args.database) as database:
        workdir = Path(tmp)
        started = time.perf_counter()
        config_path = prepare(workdir, args.accounts, database or f"sqlite:///{workdir}/bench.db")
        print(f"generated {args.accounts:,} accounts in {time.perf_counter() - started:.1f}s")
        argv = sys.argv[1:]
        results = {}
        for stage in stages:
            results[stage] = result = run_stage(stage, argv, config_path)
            print(f"{stage:9} " + "  ".join(f"{k}={shown(k, v)}" for k, v in result.items()), flush=True)
        if args.json:
            print(json.dumps(results))


if __name__ == "__main__":
    main()
