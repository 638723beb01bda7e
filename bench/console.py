"""Console latency on a large base: the account page, the playbook pages (read from the report
snapshots, once the daemon's refresh has stored them: its time per playbook is printed too) and the
playbooks list, beside a plain indexed SELECT of one account row measured in the same run, as ratios.

    python bench/console.py                     # 20,000 accounts
    python bench/console.py --accounts 1000000  # the full figure
    python bench/console.py --accounts 1000000 --base /work/tmp/base1m  # built once, measured again later

A project from `playbookd init` runs one cycle on 60 sample accounts; those accounts, with their
enrollments, emails, tasks and audit entries, are then cloned under new ids up to --accounts, in bulk.
The console is served by the real HTTP listener on loopback and asked over HTTP with a session.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playbookd import runtime  # noqa: E402
from playbookd.config.settings import load_config  # noqa: E402
from playbookd.console.app import Console  # noqa: E402
from playbookd.console.users import add_user  # noqa: E402
from playbookd.console.views import mount  # noqa: E402
from playbookd.report import snapshots, stats  # noqa: E402
from playbookd.service import cycle, http  # noqa: E402
from playbookd.store.database import connect  # noqa: E402
from playbookd.store.schema import accounts, audit, enrollments, outbox, tasks  # noqa: E402

SEED = 60
BATCH = 5_000


def cli(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "playbookd", *args], cwd=cwd, check=True, capture_output=True)


def rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def clone(engine: Engine, total: int) -> dict[str, int]:
    """Copies of the seed accounts and everything about them, each under a new id, in batches."""
    seed = {name: rows(engine, table) for name, table in
            (("accounts", accounts), ("enrollments", enrollments), ("outbox", outbox), ("tasks", tasks),
             ("audit", audit))}
    by_account: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in ("enrollments", "outbox", "tasks", "audit"):
        for row in seed[name]:
            by_account.setdefault(str(row["account_id"]), {}).setdefault(name, []).append(row)
    next_enrollment = max((r["id"] for r in seed["enrollments"]), default=0) + 1
    counts = {"accounts": 0, "enrollments": 0, "outbox": 0, "tasks": 0, "audit": 0}
    pending: dict[str, list[dict[str, Any]]] = {k: [] for k in counts}
    for index in range(total - len(seed["accounts"])):
        source = seed["accounts"][index % len(seed["accounts"])]
        new_id = f"BEN-{index:07d}"
        pending["accounts"].append({**source, "id": new_id, "data": {**source["data"], "id": new_id}})
        renumber: dict[int, int] = {}
        for row in by_account.get(source["id"], {}).get("enrollments", []):
            renumber[row["id"]] = next_enrollment
            pending["enrollments"].append({**row, "id": next_enrollment, "account_id": new_id,
                                           "active_key": None if row["active_key"] is None
                                           else f"{row['playbook_id']}:{new_id}"})
            next_enrollment += 1
        for name in ("outbox", "tasks", "audit"):
            for row in by_account.get(source["id"], {}).get(name, []):
                copy = {k: v for k, v in row.items() if k != "id"}
                copy.update(account_id=new_id, enrollment_id=renumber.get(row.get("enrollment_id") or -1))
                if "key" in copy:
                    copy["key"] = f"{row['key']}:{new_id}"
                if "message_id" in copy:
                    copy["message_id"] = f"{new_id}.{row['message_id']}"
                if copy.get("open_key") is not None:  # (playbook, account, step) of an open task: unique
                    playbook, _, step = str(row["open_key"]).split("\x1f")
                    copy["open_key"] = f"{playbook}\x1f{new_id}\x1f{step}"
                pending[name].append(copy)
        if len(pending["accounts"]) >= BATCH:
            flush(engine, pending, counts)
    flush(engine, pending, counts)
    return counts


def flush(engine: Engine, pending: dict[str, list[dict[str, Any]]], counts: dict[str, int]) -> None:
    tables = {"accounts": accounts, "enrollments": enrollments, "outbox": outbox, "tasks": tasks, "audit": audit}
    with engine.begin() as conn:
        for name, batch in pending.items():
            if batch:
                conn.execute(insert(tables[name]), batch)
                counts[name] += len(batch)
                batch.clear()


def timed(call: Any, times: int) -> float:
    """Median seconds of `times` calls, after one warm-up."""
    call()
    found = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        found.append(time.perf_counter() - start)
    return statistics.median(found)


def opener(base: str) -> urllib.request.OpenerDirector:
    client = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    form = urllib.parse.urlencode({"username": "bench", "password": "bench-password"}).encode()
    client.open(urllib.request.Request(f"{base}/console/login", data=form), timeout=60).read()
    return client


def build(root: Path, total: int) -> Path:
    project = root / "project"
    if (project / "console-users.txt").exists():
        print(f"base: the one in {root}", flush=True)
        return project
    root.mkdir(parents=True, exist_ok=True)
    cli("init", "project", "--accounts", str(SEED), cwd=root)
    cli("run", "--once", cwd=project)
    config = load_config(project / "config.yaml")
    engine = connect(config.database)
    start = time.perf_counter()
    counts = clone(engine, total)
    built = time.perf_counter() - start
    engine.dispose()
    print(f"base: {', '.join(f'{v:,} {k}' for k, v in counts.items())} cloned in {built:.0f} s", flush=True)
    add_user(config.console.users_file, "bench", "viewer", "bench-password")  # last: it marks the base complete
    return project


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--times", type=int, default=15)
    parser.add_argument("--base", type=Path, help="Keep the built base in this folder and, when it is there "
                        "already, measure it again instead of building another")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = build(args.base or Path(tmp), args.accounts)
        config = load_config(project / "config.yaml")
        engine = connect(config.database)
        rt = runtime.load(config=config, engine=engine)
        site = http.Site(engine, b"bench", "Acme", lambda: http.health(engine),
                         console=mount(Console(engine, lambda: rt, b"bench")))
        server = http.Server("127.0.0.1:0", site)
        server.start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            report(rt, engine, opener(base), base, args.times)
        finally:
            server.shutdown()
    return 0


def refresh(rt: runtime.Runtime, engine: Engine, reference: float) -> dict[str, int]:
    """The daemon's report refresh, timed per playbook: what a page used to count at every view."""
    stats.difference(1, 2, 1, 2)  # scipy's import (seconds, once per process) is not a playbook's cost
    start = time.perf_counter()
    done = cycle.refresh_reports(rt, engine)
    took = time.perf_counter() - start
    assert not done.failed, done.failed
    with engine.connect() as conn:
        sizes = {p: f.result.entered for p, f in snapshots.load_all(conn).items()}
    for playbook, seconds in sorted(done.refreshed.items(), key=lambda kv: -sizes.get(kv[0], 0)):
        enrolled = sizes.get(playbook, 0)
        per = f", {seconds / enrolled * 1e6:.1f} µs per enrollment" if enrolled else ""
        print(f"refresh {playbook} ({enrolled:,} enrollments): {seconds:.2f} s ({seconds / reference:,.0f}x the row"
              f"{per})", flush=True)
    print(f"refresh of all {len(done.refreshed)} playbooks: {took:.1f} s", flush=True)
    return sizes


def report(rt: runtime.Runtime, engine: Engine, client: urllib.request.OpenerDirector, base: str,
           times: int) -> None:
    picks = random.Random(7)
    last = f"BEN-{0:07d}"

    def one_row() -> None:
        with engine.connect() as conn:
            conn.execute(select(accounts).where(accounts.c.id == last)).first()

    def account_page() -> None:
        wanted = f"BEN-{picks.randrange(1000):07d}"
        with client.open(f"{base}/console/accounts/{wanted}", timeout=60) as answer:
            assert "/login" not in answer.geturl() and wanted in answer.read().decode()

    def page(path: str, says: str) -> Any:
        def call() -> None:
            with client.open(f"{base}{path}", timeout=120) as answer:
                assert says in answer.read().decode(), f"{path} does not say {says!r}"
        return call

    with engine.connect() as conn:  # the playbook with the most enrollments: the page's worst case
        largest, enrolled = conn.execute(select(enrollments.c.playbook_id, func.count()).group_by(
            enrollments.c.playbook_id).order_by(func.count().desc()).limit(1)).one()

    reference = timed(one_row, times * 10)
    health = timed(lambda: client.open(f"{base}/healthz", timeout=60).read(), times)
    print(f"reference: one account row by primary key {reference * 1000:.2f} ms; GET /healthz {health * 1000:.1f} ms")
    sizes = refresh(rt, engine, reference)
    small_enrolled, small = max(((n, p) for p, n in sizes.items() if n < rt.config.report.live_under),
                                default=(0, ""))
    # a page of a playbook over report.live_under reads its snapshot: it says "Figures as of"
    figures = "Figures as of" if enrolled >= rt.config.report.live_under else "Figures counted live"
    pages = [("account page", account_page),
             ("playbook page (no-login-7d)", page("/console/playbooks/no-login-7d", "Figures")),
             (f"playbook page ({largest}, {enrolled:,} enrollments)", page(f"/console/playbooks/{largest}", figures)),
             ("playbooks list", page("/console/playbooks", largest)),
             ("account search (id prefix)", page("/console/accounts?q=BEN-00005", "BEN-00005"))]
    if small_enrolled:  # the dearest page that still counts at every view
        pages.insert(3, (f"playbook page ({small}, {small_enrolled:,} enrollments, the largest counted live)",
                         page(f"/console/playbooks/{small}", "Figures counted live")))
    for name, call in pages:
        seconds = timed(call, times)
        print(f"{name}: {seconds * 1000:.0f} ms median of {times} "
              f"({seconds / reference:,.0f}x the row, {seconds / health:.1f}x /healthz)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
