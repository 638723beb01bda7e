"""CPU of syncing the sample accounts from one source, and from two accounts sources over the same
ids (a CRM export with half the columns, a billing export with the other half): a first sync, a second
and a third of the same files, with the account rows the third one writes. Reference: one source's
second sync in the same run.

    python bench/two_sources.py --accounts 20000
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def split(data: Path) -> tuple[Path, Path]:
    with (data / "accounts.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    half = len(rows[0]) // 2
    paths = data / "crm.csv", data / "billing.csv"
    for path, part in zip(paths, ([0, *range(1, half)], [0, *range(half, len(rows[0]))]), strict=True):
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([[row[i] for i in part] for row in rows])
    return paths


def config(work: Path, sources: list[dict[str, Any]]) -> Any:
    from playbookd.config.settings import Config

    cfg = Config.model_validate({"company": {"postal_address": "1 Main St"}, "sources": sources,
                                 "database": f"sqlite:///{work}/{len(sources)}.db"})
    cfg.path = work / "config.yaml"
    return cfg


def run(cfg: Any) -> dict[str, float]:
    from playbookd.store.database import connect
    from playbookd.sync.run import sync

    engine = connect(cfg.database)
    written = [0]

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE ACCOUNTS", "INSERT INTO ACCOUNT")):
            written[0] += max(cursor.rowcount, 0)

    result: dict[str, float] = {}
    for name in ("first", "second", "third"):
        written[0] = 0
        event.listen(engine, "after_cursor_execute", count)
        started = time.process_time()
        sync(engine, cfg, now=NOW)
        result[f"{name}_cpu_s"] = round(time.process_time() - started, 3)
        event.remove(engine, "after_cursor_execute", count)
        result[f"{name}_rows_written"] = written[0]
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=20_000)
    args = parser.parse_args()
    from playbookd.cli import sampledata

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sampledata.write_sample(work / "data", args.accounts, NOW)
        crm, billing = split(work / "data")
        one = run(config(work, [{"name": "crm", "kind": "csv", "entity": "accounts",
                                 "path": str(work / "data" / "accounts.csv")}]))
        two = run(config(work, [{"name": "crm", "kind": "csv", "entity": "accounts", "path": str(crm)},
                                {"name": "billing", "kind": "csv", "entity": "accounts", "path": str(billing)}]))
    print("one source ", json.dumps(one))
    print("two sources", json.dumps(two))
    print(f"third sync CPU, two sources / one source's: {two['third_cpu_s'] / one['second_cpu_s']:.2f}x")


if __name__ == "__main__":
    main()
