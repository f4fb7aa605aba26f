"""A target's intake rounds summed up: the median of each figure, errors and stalls counted."""

from __future__ import annotations

import statistics
from typing import Any

from bench.commits import COMMIT_KEYS

# wrk's run outlasting its planned seconds by more than this: requests waited seconds (the host
# or the server stopped), and the round's rate is not the server's.
STALL_SECONDS = 1.0

MEDIAN_KEYS = (  # a round's figures that its summary gives as the median over rounds
    "rps",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "cpu_us_per_request",
    "server_cores",
    "wrk_cores",
    "loop_cpu_us_per_request",
    "loop_switches_per_request",
    "loop_busy_share",
    "loop_waiting_share",
    "loop_idle_share",
    "other_threads_cpu_us_per_request",
    "context_switches_per_request",
    "foreign_core_share",
    "stolen_core_share",
)


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {k: round(statistics.median(r[k] for r in results), 2) for k in MEDIAN_KEYS}
    for key in COMMIT_KEYS:
        if all(key in r for r in results):
            summary[key] = round(statistics.median(r[key] for r in results), 3)
    for key in ("syscalls_per_request", "syscalls_top_per_request", "syscalls_note"):
        if key in results[0]:  # the first round's probe
            summary[key] = results[0][key]
    summary["errors"] = sum(r["errors"] for r in results)
    summary["stalled_rounds"] = sum(r["overran_seconds"] > STALL_SECONDS for r in results)
    summary["runs"] = results
    return summary
