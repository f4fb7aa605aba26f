"""Start a server process, wait until it listens, stop it, and read its CPU time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


def cpu_seconds(pid: int) -> float:
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def _stat_cpu_seconds(stat: Path) -> float:
    """User plus system time from a ``/proc`` stat file (a process's or one thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (Subgate's intake workers and call workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (Subgate's intake workers)."""
    total = 0.0
    for current in (pid, *descendants(pid)):
        try:
            total += cpu_seconds(current)
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class ThreadUsage:
    """CPU seconds and voluntary context switches of a process's main thread (a server's event
    loop) and of its other threads together. A loop that waits for another thread (a writer's
    commit, the GIL) switches voluntarily; the ceiling's, which never waits, almost never does.
    The loop's time runnable but not running (waiting for a core) is kept too, so that a run's
    wall time splits into the loop running, waiting for a core and idle (``shares``).
    A thread that ends between two readings drops out of the later one."""

    loop_cpu: float
    loop_switches: int
    other_cpu: float
    other_switches: int
    loop_waiting: float = 0.0

    def __sub__(self, earlier: ThreadUsage) -> ThreadUsage:
        return ThreadUsage(
            self.loop_cpu - earlier.loop_cpu,
            self.loop_switches - earlier.loop_switches,
            self.other_cpu - earlier.other_cpu,
            self.other_switches - earlier.other_switches,
            self.loop_waiting - earlier.loop_waiting,
        )

    def per_request(self, requests: int) -> dict[str, float]:
        n = max(requests, 1)
        return {
            "loop_cpu_us_per_request": round(self.loop_cpu / n * 1e6, 1),
            "loop_switches_per_request": round(self.loop_switches / n, 3),
            "other_threads_cpu_us_per_request": round(self.other_cpu / n * 1e6, 1),
            "other_threads_switches_per_request": round(self.other_switches / n, 3),
        }

    def shares(self, seconds: float) -> dict[str, float]:
        """The loop's share of ``seconds`` of wall time running, waiting for a core, and idle
        (waiting for work: requests, or its writer's answers)."""
        busy, waiting = self.loop_cpu / seconds, self.loop_waiting / seconds
        return {
            "loop_busy_share": round(busy, 3),
            "loop_waiting_share": round(waiting, 3),
            "loop_idle_share": round(max(0.0, 1.0 - busy - waiting), 3),
        }


def thread_usage(pid: int) -> ThreadUsage:
    """``pid``'s threads as ``/proc/<pid>/task`` shows them now (Linux). The loop's times come
    from its ``schedstat`` (nanoseconds, where the kernel keeps them), the rest from ``stat``."""
    loop_cpu = other_cpu = loop_waiting = 0.0
    loop_switches = other_switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu = _stat_cpu_seconds(task / "stat")
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended while we looked
        switches = next(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith("voluntary_ctxt_switches:")
        )
        if int(task.name) == pid:
            loop_switches = switches
            loop_cpu, loop_waiting = _scheduled_seconds(task) or (cpu, 0.0)
        else:
            other_cpu += cpu
            other_switches += switches
    return ThreadUsage(loop_cpu, loop_switches, other_cpu, other_switches, loop_waiting)


def _scheduled_seconds(task: Path) -> tuple[float, float] | None:
    """A thread's seconds on a core and runnable waiting for one, or None where the kernel keeps
    no ``schedstat``."""
    try:
        running, waiting = (task / "schedstat").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return int(running) / 1e9, int(waiting) / 1e9


@contextmanager
def serving(
    command: list[str], port: int, cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process)
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# With --pin: the event-loop thread of the server under test gets a core of its own, and
# everything else of the run (its other threads, the load generator, the bench) the other.
LOOP_CPU, REST_CPU = 0, 1


def pin_threads(pid: int) -> None:
    """Pin ``pid``'s main thread (its event loop) to ``LOOP_CPU`` and its other threads to
    ``REST_CPU``; threads it starts later inherit their creator's core."""
    if (os.cpu_count() or 1) < 2:
        raise RuntimeError("--pin needs two CPUs")
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        os.sched_setaffinity(tid, {LOOP_CPU} if tid == pid else {REST_CPU})
