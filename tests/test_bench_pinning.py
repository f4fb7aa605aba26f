"""``python -m bench --pin``: the server's event-loop thread on one core, its other threads on
the other (a real child process with a second thread)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.processes import LOOP_CPU, REST_CPU, pin_threads

CHILD = """
import sys, threading
threading.Thread(target=sys.stdin.read, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def _allowed(pid: int, tid: int) -> str:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))


def test_the_main_thread_gets_one_core_and_every_other_thread_the_other() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            tids = sorted(int(task.name) for task in Path(f"/proc/{child.pid}/task").iterdir())
            assert len(tids) == 2

            pin_threads(child.pid)

            allowed = {tid: _allowed(child.pid, tid).split()[-1] for tid in tids}
        finally:
            child.kill()

    assert allowed == {tid: str(LOOP_CPU if tid == child.pid else REST_CPU) for tid in tids}
