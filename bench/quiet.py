"""How much CPU *other* work took while a measurement ran (the machine is shared: 2 cores).

``Foreign(pids)`` notes the machine's busy CPU time (/proc/stat), the CPU time of the given
processes (the server, the fake gateway), of this process, and of its finished children (wrk);
``stop()`` returns the busy time nobody of ours accounts for, in seconds. It also returns the
time the hypervisor gave this VM's cores to someone else (``steal`` in /proc/stat): on a shared
host a round can lose a tenth of a core, or stop for seconds, without any process here doing
anything. A measurement during which either exceeds ``DISTURBED_SHARE`` of one core is flagged
``disturbed``.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.processes import tree_cpu_seconds

DISTURBED_SHARE = 0.10


def busy_seconds(stat: str | None = None) -> float:
    """CPU time all cores spent in processes (user, nice, system) since boot. Interrupt time is
    left out: much of it is our own loopback traffic, which no process is charged for."""
    user, nice, system = _all_cpus(stat)[:3]
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def stolen_seconds(stat: str | None = None) -> float:
    """CPU time since boot that the hypervisor ran something else while this VM's cores wanted
    to run (zero outside a VM, or where the hypervisor does not report it)."""
    fields = _all_cpus(stat)
    return (fields[7] if len(fields) > 7 else 0) / os.sysconf("SC_CLK_TCK")


def _all_cpus(stat: str | None) -> list[int]:
    """The summed ``cpu`` line of a /proc/stat text (this machine's, by default)."""
    text = Path("/proc/stat").read_text() if stat is None else stat
    return [int(x) for x in text.split("\n", 1)[0].split()[1:]]


def _own_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Foreign:
    def __init__(self, *pids: int) -> None:
        self._pids = pids
        self._started = time.monotonic()
        stat = Path("/proc/stat").read_text()  # one reading for both counters
        self._busy, self._stolen = busy_seconds(stat), stolen_seconds(stat)
        self._own = _own_seconds()
        self._theirs = [tree_cpu_seconds(pid) for pid in pids]

    def stop(self) -> dict[str, float | bool]:
        """Foreign CPU seconds, and its share of one core over the measurement; the share of
        one core the host took away meanwhile."""
        elapsed = time.monotonic() - self._started
        ours = _own_seconds() - self._own
        ours += sum(tree_cpu_seconds(p) - s for p, s in zip(self._pids, self._theirs, strict=True))
        stat = Path("/proc/stat").read_text()
        foreign = max(0.0, busy_seconds(stat) - self._busy - ours)
        share = foreign / elapsed if elapsed else 0.0
        stolen = (stolen_seconds(stat) - self._stolen) / elapsed if elapsed else 0.0
        return {
            "foreign_cpu_seconds": round(foreign, 2),
            "foreign_core_share": round(share, 3),
            "stolen_core_share": round(stolen, 3),
            "disturbed": max(share, stolen) > DISTURBED_SHARE,
        }


def least_disturbed(measure: Callable[[], dict[str, Any]], tries: int = 2) -> dict[str, Any]:
    """Measure again (up to ``tries`` times) while others' work disturbs it; keep the quietest.

    ``measure`` returns a dict holding ``Foreign.stop()``'s keys.
    """
    best: dict[str, Any] | None = None
    for attempt in range(tries):
        result = measure()
        result["try"] = attempt + 1
        if best is None or _disturbance(result) < _disturbance(best):
            best = result
        if not result["disturbed"]:
            break
        print(
            f"    ({describe(result)} meanwhile"
            + ("; measuring again)" if attempt + 1 < tries else ")"),
            flush=True,
        )
    assert best is not None
    best["tries"] = attempt + 1
    return best


def describe(result: dict[str, Any]) -> str:
    """What disturbed a measurement, as its report says it: others' work, and the host's."""
    said = f"others used {result['foreign_core_share']:.0%} of a core"
    stolen = result.get("stolen_core_share", 0.0)
    return f"{said}, the host took {stolen:.0%}" if stolen >= 0.005 else said


def _disturbance(result: dict[str, Any]) -> float:
    return float(max(result["foreign_core_share"], result.get("stolen_core_share", 0.0)))
