"""``bench.processes.thread_usage``: a server's event-loop thread apart from its other threads,
read from a real child process whose second thread burns CPU while its main thread waits."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.processes import thread_usage

CHILD = """
import sys, threading, time

def burn():
    while True:
        sum(range(10_000))

threading.Thread(target=burn, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    # A line may already be waiting when the loaded machine gets back to the read, so the read
    # alone does not always block: the sleep is the main thread's one certain voluntary switch.
    time.sleep(0.001)
    print("ok", flush=True)
"""


def test_the_main_thread_is_told_apart_from_the_other_threads() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdin is not None and child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            before = thread_usage(child.pid)
            for _ in range(20):  # the main thread blocks on stdin 20 times
                child.stdin.write("ping\n")
                child.stdin.flush()
                assert child.stdout.readline() == "ok\n"
            used = thread_usage(child.pid) - before
            deadline = time.monotonic() + 10
            while used.other_cpu < 0.05 and time.monotonic() < deadline:  # CPU ticks are 10 ms
                used = thread_usage(child.pid) - before
        finally:
            child.kill()

    assert used.loop_switches >= 20
    assert used.other_cpu > used.loop_cpu
    per_request = used.per_request(20)
    assert per_request["loop_switches_per_request"] >= 1.0
    assert per_request["other_threads_cpu_us_per_request"] > 0


LOOP = """
import sys, time
print("ready", flush=True)
if sys.argv[1] == "burn":
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pass
else:
    time.sleep(0.5)
print("done", flush=True)
"""


def _loop_shares(mode: str) -> dict[str, float]:
    """The shares of a child's main thread over the half second it burns CPU or sleeps."""
    with subprocess.Popen(
        [sys.executable, "-c", LOOP, mode], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        before, started = thread_usage(child.pid), time.monotonic()
        assert child.stdout.readline() == "done\n"
        used, seconds = thread_usage(child.pid) - before, time.monotonic() - started
        child.wait()
    return used.shares(seconds)


def test_a_loops_wall_time_splits_into_running_waiting_for_a_core_and_idle() -> None:
    burning, sleeping = _loop_shares("burn"), _loop_shares("sleep")

    assert burning["loop_busy_share"] + burning["loop_waiting_share"] > 0.8
    assert burning["loop_idle_share"] < 0.2
    assert sleeping["loop_idle_share"] > 0.8
    assert sleeping["loop_busy_share"] < 0.1
