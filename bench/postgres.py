"""Notification intake on PostgreSQL beside SQLite, in the same run; and two replicas.

Targets, each on a fresh store (a new SQLite file, or a new schema in the bench's own database,
``bench/postgres_db.py``), loaded by wrk with the intake benchmark's distinct signed
notifications, round-robin per round as ``bench/intake.py`` does:

- ``sqlite``: ``run.py serve`` on SQLite, as the intake benchmark's ``subgate``;
- ``postgres``: the same on PostgreSQL (default pool: ``pool_max = 10``);
- ``postgres-x2`` (c64 only): two ``run.py serve`` processes on one PostgreSQL schema, each
  given half the connections by a wrk of its own, at the same time; its rate is the sum.

Every PostgreSQL run counts the rows stored against the requests answered ``success``: a
notification answered and not stored is a lost one.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.intake import APP_ID, ROOT, Workspace, serve_command, signed_bodies, stored_rows
from bench.load import run_wrk
from bench.postgres_db import bench_database, fetch_value, fresh_schema
from bench.postgres_reads import run_lookups
from bench.postgres_reports import run_reports
from bench.postgres_sends import run_sends
from bench.processes import free_port, serving, tree_cpu_seconds
from bench.report import verdict
from bench.run_dirs import fresh_run_dir
from bench.wrk import LoadResult

TARGETS = ("sqlite", "postgres", "postgres-x2")
REPLICAS = {"postgres-x2": 2}
ONLY_AT_C64 = ("postgres-x2",)


@dataclass(frozen=True)
class IntakePlan:
    seconds: float
    runs: int
    connections: tuple[int, ...]
    bodies: int
    body_file: Path


def config_text(store_url: str) -> str:
    """The intake benchmark's Subgate config, on ``store_url``."""
    durable = 'synchronous = "FULL"\n' if store_url.startswith("sqlite") else ""
    return (
        f"[server]\nnotify_max_age_seconds = 2592000\n"
        f'[storage]\nurl = "{store_url}"\n{durable}[[apps]]\napp_id = "{APP_ID}"\n'
        f'alipay_public_key = "{{alipay_public}}"\n'
    )


def measure(
    target: str, connections: int, space: Workspace, plan: IntakePlan, database: str, index: int
) -> dict[str, Any]:
    """One run of ``target``: its processes on a fresh store, a warm-up, then the measured load."""
    run_dir = fresh_run_dir(space.root, f"{target}-c{connections}-{index}")
    store = f"sqlite:///{run_dir}/subgate.db" if target == "sqlite" else fresh_schema(database)
    config = run_dir / "subgate.toml"
    config.write_text(config_text(store).format(alipay_public=space.root / "alipay_public.pem"))
    ports = [free_port() for _ in range(REPLICAS.get(target, 1))]
    bodies = plan.body_file
    with _serving_all(config, ports, run_dir) as pids:
        urls = [f"http://127.0.0.1:{port}/alipay/notify" for port in ports]
        # The warm-up posts other notifications than the measured load (the file's last quarter).
        warm, reposted = _split_load(
            urls, bodies, connections, 1, plan.bodies * 3 // 4, plan.bodies // 8
        )
        before = sum(tree_cpu_seconds(pid) for pid in pids)
        # The measured load shares the file's first three quarters between the replicas' loads.
        stride = plan.bodies * 3 // 4 // len(urls)
        result, more = _split_load(urls, bodies, connections, plan.seconds, 0, stride)
        cpu = sum(tree_cpu_seconds(pid) for pid in pids) - before
    if target == "sqlite":
        rows = stored_rows("subgate", run_dir) or 0
    else:
        rows = int(fetch_value(store, "SELECT count(*) FROM notifications"))
    # A notification posted twice is answered twice and stored once: not a lost one.
    answered = sum(load.requests - load.errors for load in (warm, result)) - reposted - more
    return {
        **result.as_dict(),
        "reposted": reposted + more,
        "cpu_us_per_request": round(cpu / max(result.requests, 1) * 1e6, 1),
        "server_cores": round(cpu / result.seconds, 2),
        "stored_rows": rows,
        # Answered success but not stored (wrk's last requests may be stored without their
        # answers counted, never the reverse).
        "lost": max(0, answered - rows),
    }


class _serving_all:
    """Each replica's ``run.py serve`` on its port, started one after the other (the first one
    migrates the schema), all stopped at the end."""

    def __init__(self, config: Path, ports: list[int], run_dir: Path) -> None:
        self._contexts = [
            serving(serve_command(config, port), port, ROOT, run_dir / f"server-{n}.log")
            for n, port in enumerate(ports)
        ]

    def __enter__(self) -> list[int]:
        return [context.__enter__().pid for context in self._contexts]

    def __exit__(self, *exc: object) -> None:
        for context in reversed(self._contexts):
            context.__exit__(None, None, None)


def _split_load(
    urls: list[str], bodies: Path, connections: int, seconds: float, offset: int, stride: int
) -> tuple[LoadResult, int]:
    """``connections`` split evenly over ``urls``, one wrk each, at once, the n-th posting the
    bodies from ``offset + n * stride`` on; and how many requests went past a load's ``stride``
    (notifications another load posted too: a replica faster than the other reached them)."""
    if len(urls) == 1:
        return run_wrk(urls[0], bodies, connections, seconds, offset=offset), 0
    share = connections // len(urls)
    with ThreadPoolExecutor(len(urls)) as pool:
        loads = list(
            pool.map(
                lambda n: run_wrk(urls[n], bodies, share, seconds, offset=offset + n * stride),
                range(len(urls)),
            )
        )
    requests = sum(load.requests for load in loads)
    took = max(load.seconds for load in loads)
    reposted = sum(max(0, load.requests - stride) for load in loads)
    return LoadResult(
        requests=requests,
        seconds=took,
        rps=round(sum(load.rps for load in loads), 1),
        p50_ms=max(load.p50_ms for load in loads),
        p99_ms=max(load.p99_ms for load in loads),
        p999_ms=max(load.p999_ms for load in loads),
        errors=sum(load.errors for load in loads),
    ), reposted


def run_intake(plan: IntakePlan, space: Workspace, database: str) -> dict[str, Any]:
    """Every target at every load, round-robin per round; the medians of the rounds."""
    results: dict[str, Any] = {}
    for connections in plan.connections:
        chosen = [t for t in TARGETS if connections == 64 or t not in ONLY_AT_C64]
        runs: dict[str, list[dict[str, Any]]] = {target: [] for target in chosen}
        for index in range(plan.runs):
            for target in chosen:
                started = time.monotonic()
                result = measure(target, connections, space, plan, database, index)
                runs[target].append(result)
                print(
                    f"  {target:12} c{connections:<3} #{index + 1}: {result['rps']:>8.0f} req/s "
                    f"p99 {result['p99_ms']:6.1f} ms lost {result['lost']} "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        for target in chosen:
            results[f"{target}@c{connections}"] = _median(runs[target])
    return results


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_request", "server_cores")
    summary: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    summary["errors"] = sum(r["errors"] for r in runs)
    summary["lost"] = sum(r["lost"] for r in runs)
    summary["runs"] = runs
    return summary


def intake_ratios(results: dict[str, Any]) -> dict[str, float]:
    pairs = (
        ("postgres_vs_sqlite_c64", "postgres@c64", "sqlite@c64", "rps"),
        ("postgres_p99_vs_sqlite_c64", "postgres@c64", "sqlite@c64", "p99_ms"),
        ("postgres_vs_sqlite_c8", "postgres@c8", "sqlite@c8", "rps"),
        ("postgres_p99_vs_sqlite_c8", "postgres@c8", "sqlite@c8", "p99_ms"),
        ("replicas_x2_vs_one_postgres_c64", "postgres-x2@c64", "postgres@c64", "rps"),
    )
    out = {}
    for name, top, bottom, key in pairs:
        if top in results and bottom in results and results[bottom][key]:
            out[name] = round(results[top][key] / results[bottom][key], 3)
    return out


def intake_targets(results: dict[str, Any], ratios: dict[str, float]) -> dict[str, str]:
    """The issue's intake targets: >= 0.8 x SQLite at c64, p99 <= 2 x SQLite's; none lost."""
    out = {}
    if "postgres_vs_sqlite_c64" in ratios:
        out["postgres_intake_at_least_0.8x_sqlite_c64"] = verdict(
            ratios["postgres_vs_sqlite_c64"], 0.8, below=False
        )
        out["postgres_p99_at_most_2x_sqlite_c64"] = verdict(
            ratios["postgres_p99_vs_sqlite_c64"], 2.0 + 1e-9, below=True
        )
    lost = sum(v["lost"] for k, v in results.items() if k.startswith("postgres"))
    out["zero_lost_notifications_postgres"] = "met" if lost == 0 else f"MISSED: {lost} lost"
    return out


def run_benchmark(quick: bool, seconds: float, workdir: Path, runs: int) -> dict[str, Any]:
    """Everything PostgreSQL, in the bench's own database (created here, dropped after)."""
    space = Workspace.create(workdir)
    count = 60_000 if quick else 150_000
    plan = IntakePlan(
        seconds=seconds,
        runs=1 if quick else runs,
        connections=(64, 8),
        bodies=count,
        body_file=signed_bodies(space, count),
    )
    with bench_database() as database:
        print(f"  PostgreSQL: {urlsplit(database).hostname}, database {database.rsplit('/', 1)[1]}")
        results = run_intake(plan, space, database)
        (workdir / "lookups").mkdir()
        lookups = run_lookups(quick, seconds, workdir / "lookups", database)
        gated = run_sends(quick, seconds, workdir / "sends", database, plan.runs)
        reports = run_reports(quick, seconds, workdir / "reports", database, plan.runs)
    ratios = intake_ratios(results)
    return {
        "plan": {"seconds": plan.seconds, "runs": plan.runs, "connections": plan.connections},
        "intake": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
        "runs": {k: v["runs"] for k, v in results.items()},
        "lookups": lookups,
        "sends": gated,
        "reports": reports,
        "ratios": {**ratios, **lookups["ratios"], **gated["ratios"], **reports["ratios"]},
        "targets": {
            **intake_targets(results, ratios),
            **lookups["targets"],
            **gated["targets"],
            **reports["targets"],
        },
    }


def print_summary(report: dict[str, Any]) -> None:
    for name, entry in report["intake"].items():
        print(
            f"  intake {name:18} {entry['rps']:>8.0f} req/s  p50 {entry['p50_ms']:6.2f} ms  "
            f"p99 {entry['p99_ms']:6.2f} ms  cpu {entry['cpu_us_per_request']:6.0f} us/req  "
            f"errors {entry['errors']}  lost {entry['lost']}"
        )
    for store, loads in report["lookups"]["http_single"].items():
        for load, entry in loads.items():
            print(
                f"  lookup {store:8} {load:4} {entry['rps']:>8.0f} req/s  "
                f"p50 {entry['p50_ms']:.2f} ms  p99 {entry['p99_ms']:.2f} ms  "
                f"errors {entry['errors']}"
            )
    for store, rates in report["sends"]["sends_per_second"].items():
        print(f"  sends  {store:8} {rates} sent/s by round")
    for store, rates in report["reports"]["reports_per_second"].items():
        print(f"  reports {store:7} {rates} req/s by round")
    for name, value in report["ratios"].items():
        print(f"    {name:34} {value:.3f}")
    for name, outcome in report["targets"].items():
        print(f"  target {name}: {outcome}")
