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
