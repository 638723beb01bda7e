"""Every figure of the benchmarks in one table, each beside its reference measured in the same run and
its target: what `make bench` prints.

    python bench/table.py              # the sizes below (about 15 minutes on a 2-core machine)
    python bench/table.py --quick      # small sizes, to check the benches run (figures mean little)

Each bench runs as its own process with `--json`; its output goes to the terminal as it comes, and
the last line (its figures) into the table. The wire benches need Postfix's `smtp-sink` and
`smtp-source` (apt-get install postfix); without them their rows say so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
Row = tuple[str, str, str, str, str]  # figure, measured, reference, ratio, target (met?)


@dataclass
class Bench:
    script: str
    full: list[str]
    quick: list[str]
    rows: Callable[[dict[str, Any]], list[Row]]
    wire: bool = False  # needs smtp-sink and smtp-source


def per_s(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}/s"


def verdict(ok: bool, target: str) -> str:
    return f"{target}: {'met' if ok else 'NOT met'}"


def sync_rows(r: dict[str, Any]) -> list[Row]:
    s = r["sync"]
    ref = per_s(s["reference_rows_per_s"], "rows") + " (plain INSERT)"
    return [("sync, first (SQLite)", per_s(s["first_rows_per_s"], "rows"), ref, f"{s['first_ratio']:.2f}x",
             verdict(s["first_rows_per_s"] >= 30_000, ">= 30,000 rows/s")),
            ("sync, repeat (SQLite)", per_s(s["again_rows_per_s"], "rows"), ref, f"{s['again_ratio']:.2f}x",
             verdict(s["again_rows_per_s"] >= 30_000, ">= 30,000 rows/s"))]


def evaluate_rows(r: dict[str, Any]) -> list[Row]:
    e = r["evaluate"]
    return [(f"evaluation, {e['accounts']:,} accounts x {e['playbooks']} playbooks",
             f"{e['seconds']:.1f} s, peak {e['peak_mb']:,.0f} MB", "-", "-",
             "1M x 20 in <= 30 s, <= 1 GB: see README")]


def prefilter_rows(r: dict[str, Any]) -> list[Row]:
    """The 20-playbook evaluation, one row per group: those SQL pre-filters and those it cannot."""
    rows = []
    for group, what in (("sql", "SQL pre-filters"), ("other", "SQL cannot pre-filter")):
        e, ref = r[f"{group}_prefilter"], r["reference"][f"{group}_seconds"]
        rows.append((f"evaluation, {e['accounts']:,} accounts x 10 playbooks {what}",
                     f"{e['seconds']:.1f} s (simulate {e['simulate_seconds']:.1f} s), peak {e['peak_mb']:,.0f} MB",
                     f"{ref:.2f} s (10 plain SQL scans)", f"{e['ratio']:.1f}x",
                     verdict(e["seconds"] * 1_000_000 / e["accounts"] <= 15 and e["peak_mb"] <= 1024,
                             "1M x 20 in <= 30 s, <= 1 GB (scaled)")))
    return rows


def incremental_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"evaluation after a sync changing {r['changed']:,} of {r['accounts']:,}",
             f"{r['incremental_seconds']:.2f} s ({r['looked_at']:,} looked at)",
             f"{r['full_seconds']:.2f} s (full)", f"{r['ratio_to_full']:.3f}x",
             verdict(r["ratio_to_full"] <= 0.05, "<= 0.05x"))]


def render_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"render + queue, {r['emails']:,} emails", per_s(r["emails_per_s"], "emails"),
             per_s(r["floor_per_s"], "emails") + " (plain Jinja + bulk INSERT)", f"{r['ratio_to_floor']:.3f}x",
             verdict(r["emails_per_s"] >= 2_000, ">= 2,000 emails/s"))]


def delivery_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"delivery into smtp-sink, {r['sent']:,} messages, {r['processes']} processes",
             per_s(r["messages_per_s"], "msg"),
             per_s(r["smtp_source_per_s"], "msg") + " (smtp-source)", f"{r['ratio_to_smtp_source']:.2f}x",
             verdict(r["messages_per_s"] >= 1_500, ">= 1,500 msg/s"))]


def peer_rows(r: dict[str, Any]) -> list[Row]:
    return [(f"end to end, {r['recipients']:,} recipients", per_s(r["playbookd_per_s"], "msg"),
             per_s(r["peer_per_s"], "msg") + " (django-drip-campaigns)", f"{r['ratio_to_peer']:.2f}x "
             f"({r['ratio_to_smtp_source']:.3f}x smtp-source)", verdict(r["ratio_to_peer"] >= 3, ">= 3x the peer"))]


BENCHES = [
    Bench("run.py", ["--accounts", "100000", "--stages", "sync,evaluate"],
          ["--accounts", "2000", "--stages", "sync,evaluate"], lambda r: sync_rows(r) + evaluate_rows(r)),
    Bench("evaluation.py", ["--accounts", "100000"], ["--accounts", "2000"], prefilter_rows),
    Bench("incremental.py", ["--accounts", "100000"], ["--accounts", "2000"], incremental_rows),
    Bench("render_queue.py", ["--accounts", "5000"], ["--accounts", "300"], render_rows),
    Bench("delivery.py", ["--messages", "20000", "--processes", "2"], ["--messages", "500", "--processes", "2"],
          delivery_rows, wire=True),
    Bench("peer.py", ["--recipients", "20000", "--processes", "2"], ["--recipients", "300", "--processes", "2"],
          peer_rows, wire=True),
]


def run(bench: Bench, quick: bool) -> list[Row]:
    if bench.wire and not (shutil.which("smtp-sink") and shutil.which("smtp-source")):
        return [(bench.script, "skipped: apt-get install postfix for smtp-sink and smtp-source", "", "", "")]
    command = [sys.executable, str(BENCH / bench.script), *(bench.quick if quick else bench.full), "--json"]
    print(f"$ {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return [(bench.script, f"FAILED (exit {done.returncode}): see its output above", "", "", "")]
    return bench.rows(json.loads(lines[-1]))


def table(rows: list[Row]) -> str:
    head = ("figure", "measured", "reference, same run", "ratio", "target")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that every bench runs")
    args = parser.parse_args()
    rows = [row for bench in BENCHES for row in run(bench, args.quick)]
    print("\n" + table(rows))
    if any("FAILED" in row[1] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
