"""Consent-gated sends on PostgreSQL beside SQLite, in the same run.

The sends benchmark's clean load (``bench/sends.py``: 64 senders, every attempt holds a credit,
every call made in the server process) runs on SQLite and on a PostgreSQL schema holding a copy
of the same ledger, round by round. Then the contended load once on PostgreSQL (a key more than
the credits per user, and copies of each request racing the original: replays and refusals),
where a race between reservations would show. Each run's books must balance: no double spend,
no user sent more than its credits, no key sent twice, the projection equal to the fold for a
sample of users.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import sends
from bench.postgres_db import alternating_rounds, fresh_schema
from bench.report import verdict

SENDS_VS_SQLITE = 0.8


def run_sends(
    quick: bool, seconds: float, workdir: Path, database: str, rounds: int
) -> dict[str, Any]:
    plan = sends.SendsPlan(
        "clean", 20_000 if quick else 100_000, 3, 0, 0, seconds=seconds, connections=64
    )

    def measure(run_dir: Path, schema: str | None) -> dict[str, Any]:
        print(f"  sends on {'postgres' if schema else 'sqlite'}:", flush=True)
        return sends.run(plan, run_dir, postgres=schema)

    runs = alternating_rounds(workdir, database, rounds, measure)
    contended = _contended(plan, workdir / "contended", database)
    rates = {store: [r["sends_per_second"] for r in results] for store, results in runs.items()}
    pairs = zip(rates["postgres"], rates["sqlite"], strict=True)
    per_round = [round(on_postgres / max(on_sqlite, 1), 3) for on_postgres, on_sqlite in pairs]
    ratio = statistics.median(per_round)
    checked = [*runs["postgres"], contended]
    balanced = all(r["targets"]["zero_double_spends"] == "met" for r in checked)
    return {
        "plan": plan.__dict__,
        "sends_per_second": rates,
        "books": {store: [r["books"] for r in results] for store, results in runs.items()},
        "contended_postgres": {"books": contended["books"], "rate": contended["sends_per_second"]},
        "ratios": {"postgres_sends_vs_sqlite": ratio},
        "targets": {
            f"postgres_sends_at_least_{SENDS_VS_SQLITE}x_sqlite": verdict(
                ratio, SENDS_VS_SQLITE, below=False
            ),
            "zero_double_spends_postgres": "met" if balanced else "MISSED",
        },
    }


def _contended(clean: sends.SendsPlan, run_dir: Path, database: str) -> dict[str, Any]:
    plan = sends.SendsPlan(
        "contended", clean.users, 3, 1, 2, seconds=clean.seconds, connections=clean.connections
    )
    run_dir.mkdir(parents=True)
    print("  contended sends on postgres:", flush=True)
    return sends.run(plan, run_dir, postgres=fresh_schema(database))
