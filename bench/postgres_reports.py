"""Subscribe-result reports on PostgreSQL beside SQLite, in the same run.

A promotion's page asks every visitor to subscribe, and each answer the mini-program gets is
reported to Subgate (``POST /v1/apps/{app}/users/{user}/subscribe-results``): a burst of
writes, each a new report, a new key and a ledger entry. wrk posts such reports at 64
connections, each for a user of its own under a key of its own, to ``run.py serve`` on a fresh
SQLite file and on a fresh PostgreSQL schema, round by round. Every report answered must be
stored: a store holding fewer reports or ledger entries than were answered lost some.
"""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path
from typing import Any

from bench.intake import APP_ID, ROOT
from bench.postgres_db import alternating_rounds, fetch_value
from bench.processes import free_port, serving
from bench.service import TEMPLATES, command, new_token, write_config, write_keys
from bench.wrk import run_script

CONNECTIONS = 64
# Each request a new user and key: the round's prefix, wrk's thread, a counter.
LUA = r"""
local app, token, template, round, n
function init(args) app = args[1]; token = args[2]; template = args[3]; round = args[4]; n = 0 end
function request()
  n = n + 1
  local user = string.format("2088%s%02d%08d", round, tid, n)
  local t = '"' .. template .. '"'
  local body = '{"success":true,"stat":"ok","behavior":"subscribe","result":' ..
    '{"subscribeEntityIds":[' .. t .. '],"subscribedEntityIds":[' .. t .. '],' ..
    '"unsubscribedEntityIds":[],"currentSubscribedEntityIds":[' .. t .. ']},' ..
    '"show":true,"keep":false,"refuse":false,' .. t .. ':"accept"}'
  local headers = {["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. user}
  local path = "/v1/apps/" .. app .. "/users/" .. user .. "/subscribe-results"
  return wrk.format("POST", path, headers, body)
end
"""


def run_reports(
    quick: bool, seconds: float, workdir: Path, database: str, rounds: int
) -> dict[str, Any]:
    """Each round: SQLite, then PostgreSQL; the median of the rounds' ratios."""

    def measure(run_dir: Path, schema: str | None) -> dict[str, Any]:
        entry = _round(run_dir, schema, 2.0 if quick else seconds)
        print(
            f"  reports on {'postgres' if schema else 'sqlite'}: {entry['rps']:.0f} req/s "
            f"p99 {entry['p99_ms']:.1f} ms, {entry['stored']} stored",
            flush=True,
        )
        return entry

    runs = alternating_rounds(workdir, database, rounds, measure)
    rates = {store: [r["rps"] for r in results] for store, results in runs.items()}
    pairs = zip(rates["postgres"], rates["sqlite"], strict=True)
    ratio = statistics.median(round(pg / max(lite, 1), 3) for pg, lite in pairs)
    lost = sum(r["answered"] - r["stored"] for rs in runs.values() for r in rs if r["lost"])
    return {
        "runs": runs,
        "reports_per_second": rates,
        "ratios": {"postgres_reports_vs_sqlite": ratio},
        "targets": {"zero_lost_reports": "met" if lost == 0 else f"MISSED: {lost} lost"},
    }


def _round(run_dir: Path, schema: str | None, seconds: float) -> dict[str, Any]:
    keys, token = write_keys(run_dir), new_token()
    database = run_dir / "subgate.db"
    config = write_config(run_dir / "subgate.toml", schema or database, keys, token)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [APP_ID, token, TEMPLATES[0][0]]
    with serving(command(config, port), port, ROOT, run_dir / "server.log"):
        run_script(base, LUA, [*args, "01"], connections=8, seconds=1, workdir=run_dir, name="w")
        load = run_script(
            base,
            LUA,
            [*args, "02"],
            connections=CONNECTIONS,
            seconds=seconds,
            workdir=run_dir,
            name="reports",
        ).load
    warm = _count(schema, database, "subscribe_reports", "idempotency_key LIKE 'k-208801%'")
    stored = _count(schema, database, "subscribe_reports", "true") - warm
    entries = _count(schema, database, "consent_events", "true") - warm
    answered = load.requests - load.errors
    return {
        **load.as_dict(),
        "answered": answered,
        "stored": stored,
        "ledger_entries": entries,
        # The requests in flight when wrk stopped are stored without being counted answered.
        "lost": stored < answered or entries != stored,
    }


def _count(schema: str | None, database: Path, table: str, where: str) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE {where}"  # noqa: S608 (constants)
    if schema is not None:
        return int(fetch_value(schema, sql))
    with sqlite3.connect(database) as db:
        return int(db.execute(sql).fetchone()[0])
