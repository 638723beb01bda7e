"""Delivery alone, against the wire: Postfix smtp-source versus playbookd into the same smtp-sink.

    python bench/delivery.py --messages 20000
    python bench/delivery.py --messages 20000 --connections 8 --batch 50
    python bench/delivery.py --messages 20000 --processes 2
    python bench/delivery.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

smtp-sink listens on a loopback port; smtp-source (8 sessions) sends --messages to it as the
reference; then as many messages are queued directly in the store (one bulk insert, so only
delivery is measured) and drained by playbookd's delivery with every send-time rule in force.
Needs Postfix's smtp-sink and smtp-source (apt-get install postfix).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run import private_schema  # noqa: E402

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
HTML = "<html><body><p>Hello {n},</p>" + "<p>Your workspace has news for you this week.</p>" * 20 + "</body></html>"
TEXT = "Hello {n},\n\n" + "Your workspace has news for you this week.\n" * 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
    proc = subprocess.Popen(["smtp-sink", *as_root, f"127.0.0.1:{port}", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):  # bounded wait for the listener
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"smtp-sink did not start on 127.0.0.1:{port}")


@contextmanager
def sink_on_loopback() -> Iterator[int]:
    """smtp-sink on a free loopback port for the duration; its port."""
    if not (shutil.which("smtp-sink") and shutil.which("smtp-source")):
        raise SystemExit("smtp-sink/smtp-source not found: apt-get install postfix")
    port = free_port()
    sink = start_sink(port)
    try:
        yield port
    finally:
        sink.kill()
        sink.wait()


def reference(port: int, messages: int) -> float:
    """smtp-source's messages/s: 8 sessions, bodies about as long as ours."""
    started = time.perf_counter()
    subprocess.run(["smtp-source", "-s", "8", "-m", str(messages), "-l", str(len(HTML) + len(TEXT)),
                    "-f", "success@example.com", "-t", "someone@example.com", f"127.0.0.1:{port}"], check=True)
    return messages / (time.perf_counter() - started)


def senders_cpu(courier: Any) -> float:
    """CPU seconds the courier's sending processes used so far."""
    total = 0.0
    for worker in courier.senders.pool if courier.senders else []:
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def queue(engine: object, messages: int) -> None:
    from sqlalchemy import insert

    from playbookd.store.database import transaction
    from playbookd.store.schema import outbox

    rows = [{"key": f"bench:{n}", "message_id": f"<bench-{n}@playbookd.example>", "playbook_id": "bench",
             "account_id": f"ACC-{n % 1000}", "to_addr": f"user{n}@customer{n % 1000}.example",
             "template": "bench", "category": "product_tips", "priority": 0, "subject": f"News for you, {n}",
             "html": HTML.format(n=n), "text": TEXT.format(n=n), "state": "queued", "attempts": 0,
             "headers": {"List-Unsubscribe-URL": f"https://cs.example.com/u/{n}"},
             "not_before": NOW, "created_at": NOW} for n in range(messages)]
    with transaction(engine) as conn:  # type: ignore[arg-type]
        for start in range(0, messages, 5000):
            conn.execute(insert(outbox), rows[start:start + 5000])


def playbookd(workdir: Path, database: str, port: int, messages: int, connections: int,
              batch: int, processes: int = 1) -> dict[str, float]:
    import yaml

    from playbookd import runtime
    from playbookd.cli import sampledata
    from playbookd.config.settings import load_config
    from playbookd.delivery.courier import Courier
    from playbookd.delivery.senders import FixedClock
    from playbookd.store.database import connect

    for name in ("playbooks", "email_templates"):
        shutil.copytree(ROOT / name, workdir / name)
    sampledata.write_sample(workdir / "data", 10, NOW)  # the playbooks' fields; no sync runs
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["database"] = database or f"sqlite:///{workdir}/bench.db"
    config["delivery"].update(transport="smtp", quiet_hours=None, frequency_cap=None, rate_per_second=1_000_000,
                              processes=processes,
                              smtp={"host": "127.0.0.1", "port": port, "connections": connections, "batch": batch})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    settings = load_config(workdir / "config.yaml")
    engine = connect(settings.database)
    courier = Courier(runtime.load(config=settings, engine=engine))
    try:
        courier.deliver(engine, clock=FixedClock(NOW))  # nothing due yet: the daemon's sending processes are up
        queue(engine, messages)
        started, cpu = time.perf_counter(), time.process_time() + senders_cpu(courier)
        report = courier.deliver(engine, clock=FixedClock(NOW))
        seconds = time.perf_counter() - started
        cpu = time.process_time() + senders_cpu(courier) - cpu
    finally:
        courier.close()
    return {"processes": processes, "sent": report.sent, "failed": report.failed, "unknown": report.unknown,
            "seconds": seconds,
            "messages_per_s": report.sent / seconds, "cpu_ms_per_message": 1000 * cpu / max(report.sent, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--processes", type=int, default=1, help="delivery.processes (sending processes)")
    parser.add_argument("--database", default="", help="a store URL (default: a fresh SQLite file)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with sink_on_loopback() as port, tempfile.TemporaryDirectory() as tmp, private_schema(args.database) as url:
        wire = reference(port, args.messages)
        ours = playbookd(Path(tmp), url or "", port, args.messages, args.connections, args.batch,
                         args.processes)
    result = {"smtp_source_per_s": wire, **ours, "ratio_to_smtp_source": ours["messages_per_s"] / wire}
    if args.json:
        print(json.dumps(result))
        return
    print(f"smtp-source (8 sessions): {wire:,.0f} messages/s")
    print(f"playbookd ({args.processes} process(es) x {args.connections} connections, batch {args.batch}): "
          f"{ours['messages_per_s']:,.0f} "
          f"messages/s ({ours['sent']:,} sent, {ours['failed']} failed, {ours['unknown']} unknown), "
          f"{result['ratio_to_smtp_source']:.2f}x smtp-source; {ours['cpu_ms_per_message']:.2f} ms of CPU per message")


if __name__ == "__main__":
    main()
