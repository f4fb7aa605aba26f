"""Scaling: intake throughput when the notifications table already holds 0, 10k, 100k, 1M rows.

For each size, a private copy of a pre-filled database (``bench.notifications_fill``, cached)
gets the intake benchmark's load: Subgate as a real process with production settings
(``bench.intake.command``), wrk with distinct signed ~1 KB notifications (``bench.bodies``),
a 2 s warm-up, then the measured run. The file sizes give the bytes each stored notification
costs: over the pre-fill (``(size(n) - size(empty)) / n``) and over what intake itself wrote
during the run (growth of the database, WAL checkpointed at shutdown, / rows added).

Each of ``rounds`` rounds measures every size once, smallest first, so that a drift in the
machine's speed shifts all sizes of a round alike. Each size reports its median round, and the
no-collapse ratio (largest over empty) is the median of the per-round ratios: one run per size
was seen to swing that ratio from 0.79 to 1.31 on the same code (bench/README.md).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.intake import ROOT, Workspace, command, signed_bodies
from bench.load import run_wrk
from bench.notifications_fill import cached_notifications, copy_to, empty_database
from bench.processes import cpu_seconds, free_port, serving
from bench.quiet import Foreign, least_disturbed
from bench.report import verdict

NO_COLLAPSE_RATIO = 0.8  # the largest table keeps at least this share of the empty table's rate


@dataclass(frozen=True)
class ScalingPlan:
    sizes: tuple[int, ...]
    seconds: float
    connections: int
    bodies: int  # the intake benchmark's body count, so the cached file is shared
    rounds: int = 1


def run(plan: ScalingPlan, workdir: Path) -> dict[str, Any]:
    space = Workspace.create(workdir)
    bodies = signed_bodies(space, plan.bodies)
    empty = empty_database(workdir / "empty.db")
    empty_size = empty.stat().st_size
    filled = {size: cached_notifications(size, space.alipay_key) for size in plan.sizes if size}
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in plan.sizes}
    for round_index in range(plan.rounds):
        for size in plan.sizes:

            def measure(size: int = size) -> dict[str, Any]:
                run_dir = workdir / f"scaling-{size}-{time.monotonic_ns()}"
                run_dir.mkdir()
                database = run_dir / "subgate.db"
                if size:
                    copy_to(filled[size], database)
                else:
                    empty_database(database)
                result = _measure(size, database, space, plan, bodies, run_dir, empty_size)
                for leftover in run_dir.glob("subgate.db*"):  # up to gigabytes each
                    leftover.unlink()
                return result

            entry = least_disturbed(measure)
            runs[size].append(entry)
            print(
                f"  scaling round {round_index + 1}: {size:>9,} rows: {entry['rps']:>7.0f} req/s  "
                f"p99 {entry['p99_ms']:6.1f} ms  errors {entry['errors']}  "
                f"{entry['bytes_per_notification_intake']:.0f} B/notification",
                flush=True,
            )
    first, last = runs[plan.sizes[0]], runs[plan.sizes[-1]]
    by_round = [
        round(big["rps"] / small["rps"], 3) if small["rps"] else 0.0
        for small, big in zip(first, last, strict=True)
    ]
    ratio = statistics.median(by_round)
    return {
        "plan": plan.__dict__,
        "empty_database_bytes": empty_size,
        "points": {str(size): median_round(entries) for size, entries in runs.items()},
        "rps_largest_vs_first": ratio,
        "rps_largest_vs_first_by_round": by_round,
        "targets": {
            f"no_collapse_rps_ratio_at_least_{NO_COLLAPSE_RATIO}": verdict(
                ratio, NO_COLLAPSE_RATIO, below=False
            )
        },
    }


def median_round(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate (the lower middle one of an even count), with every
    round's rate beside it."""
    ordered = sorted(entries, key=lambda entry: entry["rps"])
    return {**ordered[(len(ordered) - 1) // 2], "rps_by_round": [e["rps"] for e in entries]}


def _measure(
    size: int,
    database: Path,
    space: Workspace,
    plan: ScalingPlan,
    bodies: Path,
    run_dir: Path,
    empty_size: int,
) -> dict[str, Any]:
    before_bytes = database.stat().st_size
    port = free_port()
    url = f"http://127.0.0.1:{port}/alipay/notify"
    with serving(command("subgate", space, port, run_dir), port, ROOT, run_dir / "server.log") as p:
        warm = run_wrk(url, bodies, plan.connections, 2, offset=plan.bodies // 2)
        watch = Foreign(p.pid)
        before_cpu = cpu_seconds(p.pid)
        result = run_wrk(url, bodies, plan.connections, plan.seconds, offset=0)
        cpu = cpu_seconds(p.pid) - before_cpu
        foreign = watch.stop()
    after_bytes = _size(database)
    with sqlite3.connect(database) as db:
        rows = int(db.execute("SELECT count(*) FROM notifications").fetchone()[0])
    added = rows - size
    return {
        **result.as_dict(),
        "cpu_us_per_request": round(cpu / max(result.requests, 1) * 1e6, 1),
        "rows_before": size,
        "rows_added": added,
        "requests_answered": warm.requests + result.requests,
        # Requests still in flight when wrk stopped are stored but not counted by wrk.
        "rows_match_answers": 0 <= added - warm.requests - result.requests <= 2 * plan.connections,
        "bytes_before": before_bytes,
        "bytes_after": after_bytes,
        "bytes_per_notification_prefill": round((before_bytes - empty_size) / size, 1)
        if size
        else None,
        "bytes_per_notification_intake": round((after_bytes - before_bytes) / max(added, 1), 1),
        **foreign,
    }


def _size(database: Path) -> int:
    """The database and whatever WAL is left (none after a clean shutdown)."""
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
