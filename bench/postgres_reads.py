"""Single-key lookups on PostgreSQL beside SQLite, on the same ledger, in the same run.

The lookup benchmark's ledger (``bench/lookup.py``: 1 M users, 100,000 with ``--quick``) is
served once from its SQLite file and once from a PostgreSQL schema it was copied into
(``bench/postgres_ledger.py``). Each server first answers a spot check (its answers are what the
ledger's scenarios say), is warmed for 2 s, then gets the lookup benchmark's closed-loop loads.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.intake import APP_ID, ROOT
from bench.ledger_fill import MIXED, cached_ledger
from bench.lookup import LUA, Load, LookupPlan, _every_load, _spot_check, read_through
from bench.postgres_db import fresh_schema
from bench.postgres_ledger import to_postgres
from bench.processes import free_port, serving
from bench.report import verdict
from bench.service import TEMPLATES, command, new_token, write_config, write_keys
from bench.wrk import run_script

LOADS = (Load(1), Load(8))
P99_VS_SQLITE = 1.5


def run_lookups(quick: bool, seconds: float, workdir: Path, database: str) -> dict[str, Any]:
    users = 100_000 if quick else 1_000_000
    ledger = cached_ledger(MIXED, users)
    schema = fresh_schema(database)
    started = time.monotonic()
    copied = to_postgres(ledger.path, schema)
    print(f"  ledger copied into PostgreSQL: {copied:,} rows in {time.monotonic() - started:.0f} s")
    read_through(ledger.path)
    keys, token = write_keys(workdir), new_token()
    plan = LookupPlan(users, seconds, LOADS, api_calls=0, bulk_requests=0, check_users=0)
    args = [APP_ID, token, str(users), *(t for t, _, _ in TEMPLATES)]
    http: dict[str, Any] = {}
    for name, store in (("sqlite", ledger.path), ("postgres", schema)):
        config = write_config(workdir / f"lookup-{name}.toml", store, keys, token)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serving(command(config, port), port, ROOT, workdir / f"lookup-{name}.log") as server:
            asyncio.run(_spot_check(base, token, ledger))
            run_script(
                base, LUA, [*args, "0"], connections=8, seconds=2, workdir=workdir, name="lu"
            )
            http[name] = _every_load(f"lookup {name}", base, args, plan, workdir, server.pid)
    ratios = {
        f"lookup_postgres_p99_vs_sqlite_{load.name}": round(
            http["postgres"][load.name]["p99_ms"] / max(http["sqlite"][load.name]["p99_ms"], 1e-3),
            3,
        )
        for load in LOADS
    }
    return {
        "ledger": {**ledger.meta, "rows_copied_to_postgres": copied},
        "http_single": http,
        "ratios": ratios,
        "targets": {
            f"postgres_lookup_p99_within_{P99_VS_SQLITE}x_sqlite_c8": verdict(
                ratios["lookup_postgres_p99_vs_sqlite_c8"], P99_VS_SQLITE + 1e-9, below=True
            )
        },
    }
