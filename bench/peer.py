"""End to end against a peer: playbookd versus django-drip-campaigns on the same workload and wire.

    python bench/peer.py --recipients 20000
    python bench/peer.py --recipients 20000 --processes 2 --stages --before /tmp/playbookd-before
    python bench/peer.py --recipients 20000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Both send a "no login in 7 days" email to every one of --recipients people into the same Postfix
smtp-sink, with smtp-source (8 sessions) measured first as the wire's reference:
- django-drip-campaigns (Django 4.2, SQLite, Django's SMTP backend) is installed in a throwaway
  virtualenv; its users are created before the clock starts, then `send_drips` is timed
  (evaluate + render + send + record).
- playbookd gets the same people as accounts with one admin contact each, one playbook with one
  email step, and `playbookd run --once` is timed as a subprocess (sync + evaluate + render + send
  + record), every send-time rule in force but the frequency cap, quiet hours and rate lifted.
--stages prints where `run --once` spent its wall time (its "cycle:" line; start-up
is the rest: interpreter, imports, config, playbooks, migrations, exit). --before runs playbookd a
second time, first, from another source tree (e.g. `git archive` of an older commit) on the same
sink, for a same-run before/after ratio.
Needs Postfix's smtp-sink and smtp-source (apt-get install postfix) and PyPI for the peer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from pathlib import Path
from typing import Any

from delivery import reference, sink_on_loopback
from run import private_schema

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-11-24T15:00:00Z"
LAST_LOGIN = "2026-11-10T09:00:00Z"  # two weeks before NOW: everyone qualifies
PEER_PACKAGES = ["django>=4.2,<5", "django-drip-campaigns>=1.15,<2"]
SUBJECT = "We miss you at {{ user.first_name }}'s workspace"
BODY = ("<html><body><p>Hi {{ user.first_name }},</p><p>Your team has not signed in for a week. "
        "Here are three things you can do in five minutes:</p><ul><li>Invite a colleague</li>"
        "<li>Connect your calendar</li><li>Try the weekly report</li></ul>"
        "<p>Reply to this email if anything is in your way.</p></body></html>")

PEER_DRIVER = textwrap.dedent('''
    import json, os, sys, time
    from datetime import datetime, timezone
    import django
    from django.conf import settings
    settings.configure(
        DEBUG=False, SECRET_KEY="bench", USE_TZ=True, TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "drip"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1", EMAIL_PORT=int(sys.argv[2]), DRIP_FROM_EMAIL="success@acme.example",
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        LOGGING_CONFIG=None)
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from drip.models import Drip, QuerySetRule, SentDrip
    call_command("migrate", verbosity=0)
    last_login = datetime.fromisoformat(sys.argv[4])
    users = [User(username=f"user{n}", first_name=f"Ana{n}", email=f"user{n}@customer{n % 1000}.example",
                  last_login=last_login) for n in range(int(sys.argv[3]))]
    User.objects.bulk_create(users, batch_size=2000)
    drip = Drip.objects.create(name="no login in 7 days", enabled=True, subject_template=sys.argv[5],
                               body_html_template=sys.argv[6])
    QuerySetRule.objects.create(drip=drip, field_name="last_login", lookup_type="lt", field_value="now-7 days")
    started, cpu = time.perf_counter(), time.process_time()
    call_command("send_drips")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"sent": SentDrip.objects.count(), "seconds": seconds, "cpu": cpu}))
''')


def peer_python(workdir: Path) -> Path:
    """A virtualenv of its own, so the peer's dependencies never meet ours."""
    home = workdir / "peer-venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"installing the peer failed:\n{done.stderr[-4000:]}")
    return python


def run_peer(workdir: Path, port: int, recipients: int) -> dict[str, float]:
    python = peer_python(workdir)
    driver = workdir / "peer_driver.py"
    driver.write_text(PEER_DRIVER)
    done = subprocess.run([str(python), str(driver), str(workdir / "peer.db"), str(port), str(recipients),
                           LAST_LOGIN.replace("Z", "+00:00"), SUBJECT, BODY],
                          check=True, capture_output=True, text=True, timeout=3600)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PLAYBOOK = {
    "id": "bench-no-login", "name": "No login in 7 days", "status": "live", "category": "product_tips",
    "trigger": {"when": {"last_login_at": {"older_than": "7d"}}},
    "steps": [{"email": {"template": "login_nudge", "to": "admin"}}],
}


def write_data(data: Path, recipients: int) -> None:
    data.mkdir()
    with (data / "accounts.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "name", "annual_revenue", "lifecycle_stage", "status", "last_login_at"])
        out.writerows([f"ACC-{n:07d}", f"Workspace {n}", 5000, "adopted", "active", LAST_LOGIN]
                      for n in range(recipients))
    with (data / "contacts.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["account_id", "email", "first_name", "role", "timezone", "status", "is_primary"])
        out.writerows([f"ACC-{n:07d}", f"user{n}@customer{n % 1000}.example", f"Ana{n}", "admin", "UTC", "active",
                       "true"] for n in range(recipients))


def write_project(project: Path, port: int, recipients: int, processes: int, database: str | None = None) -> Path:
    import yaml

    shutil.copytree(ROOT / "email_templates", project / "email_templates")
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks" / "bench-no-login.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    write_data(project / "data", recipients)
    config: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["database"] = database or f"sqlite:///{project}/playbookd.db"
    config["delivery"].update(transport="smtp", quiet_hours=None, frequency_cap=None, rate_per_second=1_000_000,
                              processes=processes, smtp={"host": "127.0.0.1", "port": port})
    config["launch"] = {"warn_over": 10 * recipients}
    path = project / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_playbookd(workdir: Path, port: int, recipients: int, processes: int, source: Path | None = None,
                  database: str | None = None) -> dict[str, Any]:
    """`source`: a playbookd source tree to run instead of the installed one; `database`: a
    PostgreSQL URL (a schema of its own is made in it), else a new SQLite file."""
    with private_schema(database) as url:
        return _run_playbookd(workdir, port, recipients, processes, source, url)


def _run_playbookd(workdir: Path, port: int, recipients: int, processes: int, source: Path | None,
                   database: str | None) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    project = workdir / "project"
    if project.exists():
        shutil.rmtree(project)
    config = write_project(project, port, recipients, processes, database)
    command = [str(Path(sys.executable).parent / "playbookd"), "run", "--once", "--config", str(config), "--at", NOW]
    env = dict(os.environ, PYTHONPATH=str(source)) if source else None
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"playbookd run --once exited {done.returncode}:\n{done.stderr[-4000:]}")
    engine = create_engine(database or f"sqlite:///{project}/playbookd.db")
    with engine.connect() as conn:
        sent = conn.execute(text("SELECT count(*) FROM outbox WHERE state = 'sent'")).scalar_one()
    engine.dispose()
    return {"sent": sent, "seconds": seconds, "stages": stages(done.stdout, seconds)}


def stages(stdout: str, wall: float) -> dict[str, float]:
    """The cycle's own stage times from its "cycle: N s (stage N, ...)" line, and start-up as the rest."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        if line.startswith("cycle: ") and line.endswith(")"):
            seconds, _, parts = line.removeprefix("cycle: ").partition(" s (")
            found = {name: float(took) for name, _, took in (p.rpartition(" ") for p in parts[:-1].split(", "))}
            found["start-up and exit"] = wall - float(seconds)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=1, help="playbookd's delivery.processes")
    parser.add_argument("--stages", action="store_true", help="print where run --once spent its time")
    parser.add_argument("--before", type=Path, help="also run playbookd from this source tree, for a ratio")
    parser.add_argument("--database", help="playbookd's store: a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with sink_on_loopback() as port, tempfile.TemporaryDirectory() as tmp:
        wire = reference(port, args.recipients)
        peer = run_peer(Path(tmp), port, args.recipients)
        before = (run_playbookd(Path(tmp), port, args.recipients, args.processes, args.before, args.database)
                  if args.before else None)
        ours = run_playbookd(Path(tmp), port, args.recipients, args.processes, database=args.database)
    result: dict[str, Any] = {
        "recipients": args.recipients, "smtp_source_per_s": wire,
        "peer_sent": peer["sent"], "peer_per_s": peer["sent"] / peer["seconds"],
        "playbookd_sent": ours["sent"], "playbookd_per_s": ours["sent"] / ours["seconds"]}
    result["ratio_to_peer"] = result["playbookd_per_s"] / result["peer_per_s"]
    result["ratio_to_smtp_source"] = result["playbookd_per_s"] / wire
    if args.stages:
        result["stages"] = ours["stages"]
    if before is not None:
        result.update(before_sent=before["sent"], before_per_s=before["sent"] / before["seconds"])
        result["ratio_to_before"] = result["playbookd_per_s"] / result["before_per_s"]
        if args.stages:
            result["before_stages"] = before["stages"]
    result["load"] = os.getloadavg()
    print(json.dumps(result) if args.json else report(result))


def report(r: dict[str, Any]) -> str:
    lines = [
        f"recipients: {r['recipients']:,}",
        f"smtp-source (8 sessions):          {r['smtp_source_per_s']:8,.0f} messages/s",
        f"django-drip-campaigns send_drips:  {r['peer_per_s']:8,.0f} messages/s ({r['peer_sent']:,} sent)",
        f"playbookd run --once (end to end): {r['playbookd_per_s']:8,.0f} messages/s ({r['playbookd_sent']:,} sent)",
        f"playbookd / peer: {r['ratio_to_peer']:.2f}x; playbookd / smtp-source: {r['ratio_to_smtp_source']:.3f}x",
    ]
    if "before_per_s" in r:
        lines.append(f"playbookd --before tree:           {r['before_per_s']:8,.0f} messages/s "
                     f"({r['before_sent']:,} sent); after / before: {r['ratio_to_before']:.2f}x, "
                     f"before / peer: {r['before_per_s'] / r['peer_per_s']:.2f}x")
    for key, title in (("before_stages", "stages, --before tree"), ("stages", "stages")):
        if r.get(key):
            lines.append(f"{title} (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r[key].items()))
    lines.append("load average at the end: " + " ".join(f"{x:.2f}" for x in r["load"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
