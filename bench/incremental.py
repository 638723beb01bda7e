"""Incremental evaluation against a full one, in the same run on the same store:

    python bench/incremental.py                     # 100,000 accounts, 1% changed by a second sync
    python bench/incremental.py --accounts 20000 --changed 0.05 --database postgresql+psycopg://...

A sync of the sample data, a full evaluation (the reference), an evaluation with nothing changed (it
looks again at the accounts the full one enrolled: their first exit check), then a second sync that
changes `--changed` of the accounts and the evaluation measured: it looks only at those changed or
due. Prints both times and their ratio (target: at most 0.05 for 1%). `--trends` keeps the shipped
playbook with a trend condition, which is evaluated over every account each time.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from run import NOW, prepare


def change_accounts(path: Path, share: float, seed: int = 3) -> int:
    """Rewrite accounts.csv with `share` of the rows changed the way a CRM export would change them."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), max(1, int(len(rows) * share)))
    for i in picked:
        row = rows[i]
        row["nps"] = str(rng.randint(0, 10))
        row["last_login_at"] = (NOW + timedelta(minutes=rng.randint(0, 50))).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of accounts the second sync changes")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--trends", action="store_true", help="keep the shipped playbook with a trend condition")
    parser.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    args = parser.parse_args()

    from playbookd import runtime
    from playbookd.engine import scope
    from playbookd.engine.evaluate import evaluate
    from playbookd.model.evaluation import epoch_us
    from playbookd.service.cycle import run_sync
    from playbookd.store import marks
    from playbookd.store.database import connect

    with tempfile.TemporaryDirectory(prefix="playbookd-incremental-") as tmp:
        workdir = Path(tmp)
        config_path = prepare(workdir, args.accounts, args.database or f"sqlite:///{workdir}/bench.db")
        if not args.trends:
            (workdir / "playbooks" / "health-drop.yaml").unlink()
        rt = runtime.load(config_path)
        engine = connect(rt.config.database)
        run_sync(rt, engine, now=NOW)
        started = time.perf_counter()
        enrolled = evaluate(rt, engine, NOW, full=True)
        full = time.perf_counter() - started
        settle_at = NOW + timedelta(minutes=5)
        again = len(marks.pending(engine, epoch_us(settle_at, rt.config.tz)))
        started = time.perf_counter()
        evaluate(rt, engine, settle_at)
        settle = time.perf_counter() - started
        changed = change_accounts(workdir / "data" / "accounts.csv", args.changed)
        at = NOW + timedelta(hours=1)
        run_sync(rt, engine, now=at)
        looked = len(marks.pending(engine, epoch_us(at, rt.config.tz)))
        started = time.perf_counter()
        evaluate(rt, engine, at)
        incremental = time.perf_counter() - started
        volatile = sorted(scope.always_full(rt, rt.playbooks))
        print(f"accounts={args.accounts:,} playbooks={len(rt.playbooks)} every-account playbooks={volatile or 'none'}")
        print(f"full evaluation:                  {full:8.2f}s  (enrolled {enrolled:,})")
        print(f"after it, nothing changed:        {settle:8.2f}s  ({again:,} accounts looked at: its entrants, and "
              "those whose changes it consumed)")
        print(f"after a sync changing {changed:,} accounts: {incremental:8.2f}s  ({looked:,} accounts looked at)")
        print(f"ratio incremental / full:         {incremental / full:8.3f}  (target <= 0.05)")
        if args.json:
            print(json.dumps({"accounts": args.accounts, "changed": changed, "looked_at": looked,
                              "full_seconds": full, "incremental_seconds": incremental,
                              "ratio_to_full": incremental / full}))
        engine.dispose()


if __name__ == "__main__":
    main()
