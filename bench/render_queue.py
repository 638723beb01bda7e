"""Rendering and queueing: `advance` on N due enrollments whose first step is an email, beside a
floor measured in the same run.

    python bench/render_queue.py                        # 5,000 accounts, SQLite
    python bench/render_queue.py --accounts 20000 --template login_nudge
    python bench/render_queue.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/render_queue.py --profile 25           # and cProfile's top 25 of `advance`

A project from `playbookd init` is synced, one playbook (an email to the primary contact, then
a wait) enrolls every account that is not churned, and `advance` alone is timed: claim, render
through the render worker, queue into the outbox, audit. The floor is what the same emails cost
without playbookd: the same templates rendered by a plain Jinja environment in this process (no
sandbox, no worker, no derived text part) with the same contexts, plus the same outbox rows
inserted in one executemany. A PostgreSQL URL gets a private schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import jinja2
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run import private_schema  # noqa: E402

from playbookd import runtime  # noqa: E402
from playbookd.cadence.advance import advance  # noqa: E402
from playbookd.cadence.context import template_context  # noqa: E402
from playbookd.config.settings import load_config  # noqa: E402
from playbookd.delivery.recipients import load_contacts  # noqa: E402
from playbookd.engine.evaluate import evaluate  # noqa: E402
from playbookd.service import cycle  # noqa: E402
from playbookd.store.accounts import load_account_types, records_by_id  # noqa: E402
from playbookd.store.database import connect, utcnow  # noqa: E402
from playbookd.store.schema import outbox  # noqa: E402
from playbookd.templates.filters import FILTERS  # noqa: E402
from playbookd.templates.front_matter import front_end  # noqa: E402

PLAYBOOK = """id: bench-email
name: Render and queue bench
status: live
category: product_tips
trigger:
  when: {not: {status: {in: [churned, cancelled]}}}
steps:
  - email: {template: TEMPLATE, to: primary}
  - wait: 7d
"""


@contextmanager
def database(url: str | None, project: Path) -> Iterator[str | None]:
    if url is None:
        yield f"sqlite:///{project}/bench.db"
        return
    with private_schema(url) as private:
        yield private


def prepare(root: Path, accounts: int, template: str, url: str | None) -> Path:
    subprocess.run([sys.executable, "-m", "playbookd", "init", "project", "--accounts", str(accounts)],
                   cwd=root, check=True, capture_output=True)
    project = root / "project"
    for old in (project / "playbooks").glob("*.yaml"):
        old.unlink()
    (project / "playbooks" / "bench-email.yaml").write_text(PLAYBOOK.replace("TEMPLATE", template))
    config = project / "config.yaml"
    if url is not None:
        config.write_text(config.read_text().replace("sqlite:///playbookd.db", url))
    return config


class _PlainLoader(jinja2.FileSystemLoader):
    """The front matter blanked as playbookd's loader does, nothing else."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        lines = source.split("\n")
        end = front_end(lines)
        return (source if end is None else "\n" * (end + 1) + "\n".join(lines[end + 1:])), filename, uptodate


def floor_renders(rt: runtime.Runtime, engine: Engine, template: str) -> tuple[float, int]:
    """Seconds to render every queued email's HTML (and hand-written text part) with plain Jinja."""
    env = jinja2.Environment(loader=_PlainLoader(str(rt.templates.root)), autoescape=True)
    env.filters.update(FILTERS)
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.account_id, outbox.c.contact_id, outbox.c.template)).all()
        people = load_contacts(conn, {r.account_id for r in rows})
        types = load_account_types(conn)
    records = {r["id"]: r for r in records_by_id(engine, {r.account_id for r in rows}, types)}
    jobs = []
    for row in rows:
        contact = next(c for c in people[row.account_id] if c.id == row.contact_id)
        context = template_context(rt, rt.playbooks[0], records[row.account_id], contact.context(),
                                   "http://127.0.0.1:8025/unsubscribe/token")
        folder = row.template.partition("/")[0]
        text_part = next((f"{d}/{template}.txt.j2" for d in (folder, "default")
                          if (rt.templates.root / d / f"{template}.txt.j2").is_file()), None)
        jobs.append((env.get_template(row.template), text_part and env.get_template(text_part),
                     {**context, "globals": rt.templates.globals, "preheader": None}))
    started = time.perf_counter()
    for html, text_part, context in jobs:
        html.render(context)
        if text_part is not None:
            text_part.render(context)
    return time.perf_counter() - started, len(jobs)


def floor_insert(engine: Engine) -> float:
    """Seconds to insert as many outbox rows as were queued, copies of them, in one executemany."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(outbox))]
    copies = [{**{k: v for k, v in r.items() if k != "id"}, "key": f"floor:{r['key']}",
               "message_id": f"floor.{r['message_id']}", "enrollment_id": None} for r in rows]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(outbox), copies)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(delete(outbox).where(outbox.c.key.like("floor:%")))
    return seconds


def measure(config_path: Path, template: str, profile: int) -> dict[str, float]:
    config = load_config(config_path)
    engine = connect(config.database)
    rt = runtime.load(config=config, engine=engine)
    cycle.run_sync(rt, engine)
    now = utcnow()
    enrolled = evaluate(rt, engine, now)
    rt.templates.render_string("warm", {})  # the render worker's start is paid once per process
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    advanced = advance(rt, engine, now)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        queued = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
    render_s, rendered = floor_renders(rt, engine, template)
    insert_s = floor_insert(engine)
    ours, floor = queued / seconds, rendered / (render_s + insert_s)
    print(f"{engine.dialect.name}, template {template}: {enrolled:,} enrolled, {advanced:,} advanced, "
          f"{queued:,} emails queued")
    print(f"advance (claim, render in the worker, queue, audit): {seconds:.2f} s, {ours:,.0f} emails/s, "
          f"{seconds / queued * 1e6:,.0f} µs per email")
    print(f"floor: plain Jinja {render_s / rendered * 1e6:,.0f} µs + bulk outbox INSERT "
          f"{insert_s / rendered * 1e6:,.0f} µs per email = {floor:,.0f} emails/s")
    print(f"ratio to the floor: {ours / floor:.2f}x ({floor / ours:.1f} times slower)")
    result = {"emails": queued, "emails_per_s": ours, "floor_per_s": floor, "ratio_to_floor": ours / floor}
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(profile)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        print(out.getvalue())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--template", default="onboarding_welcome",
                        help="the email (default: one whose text part is derived from its HTML)")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N")
    parser.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="playbookd-render-") as tmp:
        project = Path(tmp) / "project"
        with database(args.database, project) as url:
            config = prepare(Path(tmp), args.accounts, args.template, url if args.database else None)
            result = measure(config, args.template, args.profile)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
