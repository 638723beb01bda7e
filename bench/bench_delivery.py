"""Rendering and delivery throughput over real SMTP on loopback.

    python bench/bench_delivery.py                 # 3,000 sample accounts
    python bench/bench_delivery.py --accounts 20000 --sink smtp-sink

A sample project is synced and evaluated (which renders and queues every first email), then the
outbox is drained through the SMTP transport into a sink server in another process: Postfix's
smtp-sink when asked for and installed, else aiosmtpd's Sink handler.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "smtp-sink":
        cmd = ["smtp-sink", "-c", f"127.0.0.1:{port}", "1000"]
    else:
        cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):  # bounded wait for the listener
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{kind} did not start on 127.0.0.1:{port}")


def prepare(workdir: Path, accounts: int, port: int) -> Path:
    import yaml

    from playbookd.cli import sampledata

    for name in ("playbooks", "email_templates"):
        shutil.copytree(ROOT / name, workdir / name)
    sampledata.write_sample(workdir / "data", accounts, NOW)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["database"] = f"sqlite:///{workdir}/bench.db"
    config["delivery"].update(transport="smtp", quiet_hours=None, frequency_cap=None, rate_per_second=100_000,
                              smtp={"host": "127.0.0.1", "port": port})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "config.yaml"


def measure(config_path: Path) -> dict[str, float]:
    from playbookd import runtime
    from playbookd.config.settings import load_config
    from playbookd.service import cycle
    from playbookd.store.database import connect

    config = load_config(config_path)
    engine = connect(config.database)
    rt = runtime.load(config=config, engine=engine)
    cycle.run_sync(rt, engine, now=NOW)
    started = time.perf_counter()
    report = cycle.CycleReport()
    cycle.evaluate_and_advance(rt, engine, NOW, report)
    queued_s = time.perf_counter() - started
    started = time.perf_counter()
    delivery = cycle.deliver_due(rt, engine, clock=lambda: NOW)
    sent_s = time.perf_counter() - started
    return {"enrolled": report.enrolled, "queue_seconds": queued_s, "enrolments_per_s": report.enrolled / queued_s,
            "sent": delivery.sent, "failed": delivery.failed, "deliver_seconds": sent_s,
            "messages_per_s": delivery.sent / sent_s if sent_s else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=3_000)
    parser.add_argument("--sink", choices=["aiosmtpd", "smtp-sink"], default="aiosmtpd")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.sink == "smtp-sink" and not shutil.which("smtp-sink"):
        raise SystemExit("smtp-sink not found: apt-get install postfix")
    port = free_port()
    sink = start_sink(args.sink, port)
    try:
        with tempfile.TemporaryDirectory(prefix="playbookd-delivery-") as tmp:
            result = measure(prepare(Path(tmp), args.accounts, port))
    finally:
        sink.terminate()
        sink.wait()
    if args.json:
        print(json.dumps(result))
    else:
        print("  ".join(f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in result.items()))


if __name__ == "__main__":
    main()
