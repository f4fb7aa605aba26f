"""What a run's machine is, and how often each server under test was switched out per request.

Two machines' results can only be compared when each carries what it ran on: the CPU model
(``/proc/cpuinfo``, else ``lscpu``), the RSA-2048 probe (``bench.report.speed_probe``), how its
cores idle (``idle_setup``), and per target server its context switches per request. A switch is
counted from every thread of the server's process tree (``/proc/PID/task/*/status``: voluntary,
a wait for the network, a lock or another thread; nonvoluntary, the scheduler taking the core
away), as the difference over the measured run. Reading ``/proc`` costs the server nothing, so it
is taken in the measured run itself; the syscall count needs strace and is taken apart
(``bench.syscalls``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.processes import descendants

SWITCH_FIELDS = ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")


def cpu_model_in(cpuinfo: str) -> str | None:
    """The first CPU's ``model name`` of a ``/proc/cpuinfo`` text (x86), with its family and model
    numbers: a VM may name only the brand (``AMD EPYC``), and the numbers still tell its
    generation apart. None where the text names no model (ARM)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    model = fields.get("model name")
    if not model:
        return None
    if fields.get("cpu family") and fields.get("model"):
        return f"{model} (family {fields['cpu family']}, model {fields['model']})"
    return model


def lscpu_model_in(lscpu: str) -> str | None:
    """``Model name:`` of ``lscpu``'s text, the only place some ARM machines name their CPU."""
    for line in lscpu.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Model name" and value.strip():
            return value.strip()
    return None


def cpu_model() -> str:
    """This machine's CPU model, or ``unknown``."""
    cpuinfo = Path("/proc/cpuinfo")
    model = cpu_model_in(cpuinfo.read_text()) if cpuinfo.exists() else None
    lscpu = shutil.which("lscpu")
    if model is None and lscpu is not None:
        done = subprocess.run([lscpu], capture_output=True, text=True, check=False)
        model = lscpu_model_in(done.stdout)
    return model or "unknown"


def idle_setup(sys_root: Path = Path("/sys")) -> str:
    """The kernel's idle driver, and on a VM whether its guest halt polling is on. With it off,
    each wake-up of an idle core is an exit to the hypervisor: a server that sits idle while its
    writer commits pays for every such wake-up, a server that never waits (the ceiling) does not,
    so the same code can compare worse on one VM than on another."""
    driver = _read(sys_root / "devices/system/cpu/cpuidle/current_driver") or "unknown"
    polling = _read(sys_root / "module/haltpoll/parameters/guest_halt_poll_ns")
    if polling is None:
        return driver
    if polling == "0":
        return f"{driver}, guest halt polling off"
    return f"{driver}, guest halt polling up to {int(polling):,} ns"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def switches_in_status(status: str) -> int:
    """Voluntary plus nonvoluntary context switches of one ``/proc/.../status`` text."""
    total = 0
    for line in status.splitlines():
        if line.startswith(SWITCH_FIELDS):
            total += int(line.split()[1])
    return total


def context_switches(pid: int) -> int:
    """Every context switch so far of every thread of ``pid`` and its descendants (a thread that
    ended drops out of the sum, so read it around a run in which no thread ends)."""
    total = 0
    for process in (pid, *descendants(pid)):
        try:
            tasks = list(Path(f"/proc/{process}/task").iterdir())
        except OSError:
            continue  # exited while we looked
        for task in tasks:
            try:
                total += switches_in_status((task / "status").read_text())
            except OSError:
                continue
    return total


@dataclass
class SwitchCount:
    """Context switches of a server's process tree from ``start`` on."""

    pid: int
    started_at: int = 0

    def start(self) -> SwitchCount:
        self.started_at = context_switches(self.pid)
        return self

    def per_request(self, requests: int) -> float:
        return per_request(context_switches(self.pid) - self.started_at, requests)


def per_request(count: int, requests: int) -> float:
    return round(count / max(requests, 1), 2)
