"""System calls per request of a server under test: a short probe apart from the measured run.

strace stops the traced threads at every system call, which would slow the measured run and
change what it measures, so each target gets a probe of its own after it: ``strace -c -f`` is
attached to every process of the server's tree, the same load runs for ``PROBE_SECONDS``, and the
calls strace counted are divided by the requests that load completed. The count per request
holds under strace even though the rate does not. Where strace is missing or may not attach
(ptrace refused), the probe says so instead of failing the benchmark.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.processes import descendants

PROBE_SECONDS = 2.0
TOP = 6  # the most frequent calls kept in the results


def strace_counts(summary: str) -> dict[str, int]:
    """Calls per system call of a ``strace -c`` table, with ``total`` (the table's last line).

    Each row is ``% time, seconds, usecs/call, calls, [errors], syscall``; the errors column is
    blank where there were none, so the call count is the fourth field and the name the last.
    """
    counts: dict[str, int] = {}
    for line in summary.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[3].isdigit():
            continue  # the header, the dashes, strace's own messages
        try:
            float(fields[0])
        except ValueError:
            continue
        counts[fields[-1]] = int(fields[3])
    return counts


def summary_of(counts: dict[str, int], requests: int) -> dict[str, Any]:
    """Calls per request, in all and for the most frequent calls."""
    n = max(requests, 1)
    calls = {name: c for name, c in counts.items() if name != "total"}
    total = counts.get("total", sum(calls.values()))
    top = sorted(calls.items(), key=lambda item: -item[1])[:TOP]
    return {
        "syscalls_per_request": round(total / n, 2),
        "syscalls_top_per_request": {name: round(c / n, 2) for name, c in top},
        "syscall_probe_requests": requests,
    }


def not_measured(reason: str) -> dict[str, Any]:
    return {"syscalls_per_request": None, "syscalls_note": f"not measured ({reason})"}


def syscall_probe(pid: int, load: Callable[[], int]) -> dict[str, Any]:
    """Run ``load`` (it returns the requests it completed) with strace counting the calls of
    ``pid`` and its descendants."""
    strace = shutil.which("strace")
    if strace is None:
        return not_measured("strace missing")
    pids = [pid, *descendants(pid)]
    with tempfile.TemporaryDirectory(prefix="subgate-strace-") as tmp:
        out = Path(tmp) / "counts.txt"
        command = [strace, "-c", "-f", "-o", str(out), *(f"-p{p}" for p in pids)]
        tracer = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        attached, said = 0, []
        while attached < len(pids):  # strace says so once per process it has attached
            line = tracer.stderr.readline()
            if not line:
                break
            said.append(line.strip())
            attached += "attached" in line
        if attached < len(pids):
            tracer.wait()
            return not_measured(f"strace could not attach: {' '.join(said)[-200:]}")
        try:
            requests = load()
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.communicate(timeout=30)
        return summary_of(strace_counts(out.read_text()), requests)


def syscalls_line(entry: dict[str, Any]) -> str:
    """``4.31 syscalls/req`` or why it was not measured, for the printed summary."""
    value = entry.get("syscalls_per_request")
    if value is None:
        return str(entry.get("syscalls_note", "not measured"))
    return f"{value:.2f} syscalls/req"
