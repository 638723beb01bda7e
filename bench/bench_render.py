"""What bounding each render costs: the shipped emails rendered in-process (unguarded) and through
the render worker (time and memory limits), per email, and the ratio.

    python bench/bench_render.py               # 5 alternating rounds of 1,000 renders of the shipped emails
    python bench/bench_render.py --renders 500 --rounds 3
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playbookd.config.settings import Company  # noqa: E402
from playbookd.templates.compiled import Compiled, Rendered, Spec  # noqa: E402
from playbookd.templates.render import TEXT, Templates  # noqa: E402

SEGMENTS = ("high_touch", "low_touch", "tech_touch")
COMPANY = Company(name="Acme", postal_address="1 Main St, Springfield")


def children_cpu() -> float:
    """CPU seconds of this process's live children (the render worker)."""
    total = 0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime and stime
    return total / os.sysconf("SC_CLK_TCK")


def one_round(render: Callable[[str, str], object], jobs: list[tuple[str, str]], renders: int) -> tuple[float, float]:
    """Wall-clock and CPU (this process and its worker) microseconds per email."""
    started, cpu = time.perf_counter(), time.process_time() + children_cpu()
    for i in range(renders):
        render(*jobs[i % len(jobs)])
    wall = (time.perf_counter() - started) / renders * 1e6
    return wall, (time.process_time() + children_cpu() - cpu) / renders * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=1000, help="renders per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    templates = Templates(ROOT / "email_templates", SEGMENTS, company=COMPANY)
    jobs = [(name, segment) for name in sorted(templates.names()) for segment in SEGMENTS]
    contexts = {segment: Templates.sample_context(COMPANY, segment=segment) for segment in SEGMENTS}
    local = Compiled(Spec("bench", str(templates.root), 256 * 2**20))

    def unguarded(name: str, segment: str) -> Rendered:
        rel = templates.resolve(name, segment)
        return local.render(rel, templates._pick(name, segment, TEXT), contexts[segment])

    def guarded(name: str, segment: str) -> object:
        return templates.render(name, segment, contexts[segment])

    guarded(*jobs[0])  # the worker's start is paid once per process, not per email
    for name, segment in jobs:
        unguarded(name, segment)
        guarded(name, segment)
    # rounds alternate and the best of each counts: other load on the machine hits both alike
    plain, bounded = (math.inf, math.inf), (math.inf, math.inf)
    for _ in range(args.rounds):
        plain = min(plain, one_round(unguarded, jobs, args.renders))
        bounded = min(bounded, one_round(guarded, jobs, args.renders))
    sizes = [len(unguarded(n, s).html) for n, s in jobs]
    print(f"{len(jobs)} emails (median HTML {statistics.median(sizes):,.0f} bytes), best of {args.rounds} rounds "
          f"of {args.renders} renders")
    for what, (a, b) in (("wall-clock", (plain[0], bounded[0])), ("CPU, both processes", (plain[1], bounded[1]))):
        print(f"{what:>20}: unguarded {a:6.0f} µs per email, bounded {b:6.0f} µs (+{b - a:.0f} µs), "
              f"ratio {b / a:.2f}")

if __name__ == "__main__":
    main()
