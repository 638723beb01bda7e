"""Worker processes: a call past its time is killed, one past its memory fails alone, a stop
interrupts, and no child outlives its parent, kill -9 included."""

from __future__ import annotations

import gc
import operator
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from playbookd import workers
from playbookd.workers import Call, Interrupted, OutOfMemory, TimedOut, Worker, WorkerDied


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until_gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_call_past_its_time_is_killed_and_named() -> None:
    worker = Worker()
    pid = worker.pid
    assert workers.run(worker, Call(operator.add, (2, 3), 30, "warm-up")) == 5
    with pytest.raises(TimedOut, match=r"sleepy: took longer than 0\.5 s"):
        workers.run(worker, Call(time.sleep, (3600,), 0.5, "sleepy"))
    assert pid is not None and wait_until_gone(pid)


def test_a_call_over_its_memory_fails_and_the_worker_carries_on() -> None:
    worker = Worker(memory_mb=64)
    try:
        with pytest.raises(OutOfMemory, match="huge: took more than 64 MB"):
            workers.run(worker, Call(operator.mul, ("a", 10**9), 60, "huge"))
        assert workers.run(worker, Call(operator.mul, ("a", 3), 60, "small")) == "aaa"
    finally:
        worker.kill()


def test_a_crash_is_reported_as_the_call_s() -> None:
    worker = Worker()
    with pytest.raises(WorkerDied, match="exit code 70"):
        workers.run(worker, Call(os._exit, (70,), 60, "crash"))


def test_interrupt_stops_a_call_in_flight_and_refuses_new_ones() -> None:
    worker = Worker()
    failed: list[BaseException] = []

    def call() -> None:
        try:
            workers.run(worker, Call(time.sleep, (3600,), 3600, "long"))
        except BaseException as exc:  # the test inspects what it was
            failed.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(1.0)
    try:
        workers.interrupt_all()
        thread.join(15)
        assert not thread.is_alive()
        assert [type(e) for e in failed] == [Interrupted]
        with pytest.raises(Interrupted):
            Worker()
    finally:
        workers.resume()


def test_a_call_nobody_enforces_is_reported_overdue() -> None:
    worker = Worker()
    try:
        worker.submit(Call(time.sleep, (3600,), 0.2, "unwatched"))
        deadline = time.monotonic() + 30
        while worker.free_at is None and time.monotonic() < deadline:
            worker.receive()  # reads "ready" and enforces nothing
            time.sleep(0.05)
        time.sleep(1.5)
        assert any("unwatched" in line for line in workers.overdue(1.0))
    finally:
        worker.kill()
    assert workers.overdue(0) == []


CHILD = """
import operator, sys, time
from playbookd import workers
worker = workers.Worker()
print(worker.pid, flush=True)
workers.run(worker, workers.Call(time.sleep, (3600,), 3600, "forever"))
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_no_worker_outlives_its_parent(how: int) -> None:
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        time.sleep(1.0)  # the call is running
        assert alive(worker)
        parent.send_signal(how)
        parent.wait(15)
        assert wait_until_gone(worker), "the worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()


def test_a_call_that_cannot_be_sent_fails_and_the_worker_is_ended() -> None:
    worker = Worker()
    pid = worker.pid
    with pytest.raises(Exception, match="pickle"):
        worker.submit(Call(lambda: 1, (), 30, "unpicklable"))
    assert worker.call is None and worker.dead
    assert pid is not None and wait_until_gone(pid)


TRAPPING = """
import signal
from playbookd import workers
worker = workers.Worker(signal.signal, (signal.SIGTERM, signal.SIG_IGN), interruptible=False)
workers.run(worker, workers.Call(int, (), 60, "ready"))
print(worker.pid, flush=True)
"""  # exits without killing it: multiprocessing's exit handler would SIGTERM it, then wait forever


def test_a_child_that_traps_sigterm_does_not_hang_the_parent_s_exit() -> None:
    parent = subprocess.Popen([sys.executable, "-c", TRAPPING], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert parent.wait(60) == 0
        assert wait_until_gone(worker)
    finally:
        parent.kill()
        parent.wait()


SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as marks:  # each process that runs this script leaves a line
    marks.write(f"{os.getpid()}\\n")
if __name__ == "__main__":
    from playbookd import workers
    worker = workers.Worker()
    print(workers.run(worker, workers.Call(os.getpid, (), 60, "pid")), flush=True)
    worker.kill()
"""


@pytest.mark.parametrize("as_module", [False, True])
def test_a_worker_does_not_run_its_parent_s_main_script_again(tmp_path: Path, as_module: bool) -> None:
    """Spawn would run it as `__mp_main__` in each child: the whole CLI's imports for a worker of the
    `playbookd` command, which needs only its target's module."""
    (tmp_path / "entry.py").write_text(SCRIPT)
    marks = tmp_path / "marks"
    command = ["-m", "entry"] if as_module else [str(tmp_path / "entry.py")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, *command, str(marks)], capture_output=True, text=True, timeout=120,
                          env=env, check=True)
    ran = marks.read_text().split()
    assert len(ran) == 1, f"the script ran in {len(ran)} processes"
    assert int(done.stdout) != int(ran[0])  # the call did run, in a child


def test_a_child_keeps_what_its_initializer_built_out_of_the_collector_s_passes() -> None:
    worker = Worker()
    try:
        assert workers.run(worker, Call(gc.get_freeze_count, (), 30, "freeze count")) > 0
        threshold = workers.run(worker, Call(gc.get_threshold, (), 30, "threshold"))
        assert threshold[0] == workers.child.FIRST_GENERATION != gc.get_threshold()[0]
        assert workers.run(worker, Call(gc.collect, (), 30, "a full pass")) >= 0  # collecting still works
    finally:
        worker.kill()
