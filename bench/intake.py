"""Notification intake: Subgate against the verify-only ceiling and the naive peer, side by side.

Each target runs as its own process on a fresh database, loaded by wrk from another process with
distinct signed notifications. Ratios, measured in the same run, are what the targets are about.
"""

from __future__ import annotations

import itertools
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.bodies import make_bodies
from bench.commits import CommitTotals, commit_stats
from bench.intake_rounds import median_of
from bench.load import run_wrk
from bench.machine import SwitchCount
from bench.processes import free_port, pin_threads, serving, thread_usage, tree_cpu_seconds
from bench.quiet import Foreign, least_disturbed
from bench.run_dirs import fresh_run_dir
from bench.syscalls import PROBE_SECONDS, syscall_probe

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
APP_ID = "2021000000000001"
NAIVE_VENV = ROOT / "bench" / ".venv-naive"


# Each Subgate variant is paired with the ceiling on the same event loop. ``subgate`` runs with
# default settings (uvloop, since it is installed); the naive peer is plain aiohttp, as its
# user would write it. ``subgate-wN`` adds ``[server] intake_workers = N``: N worker processes
# parse and verify on the intake port and relay to the one process that writes the store.
TARGETS = (
    "ceiling",
    "ceiling-asyncio",
    "ceiling-httptools",
    "ceiling-durable",
    "naive",
    "subgate",
    "subgate-asyncio",
    "subgate-w1",
    "subgate-w2",
)


@dataclass(frozen=True)
class Plan:
    seconds: float
    runs: int
    connections: tuple[int, ...]
    bodies: int
    targets: tuple[str, ...] = TARGETS
    pin: bool = False  # one-process targets only: see processes.pin_threads


@dataclass
class Workspace:
    root: Path
    alipay_key: rsa.RSAPrivateKey
    app_key: rsa.RSAPrivateKey

    @classmethod
    def create(cls, root: Path) -> Workspace:
        """Keys cached in bench/.cache (made once), their PEM files written under ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        space = cls(root, _key(CACHE / "alipay_key.pem"), _key(CACHE / "app_key.pem"))
        _write(root / "alipay_public.pem", public_pem(space.alipay_key))
        _write(root / "app_private.pem", private_pem(space.app_key))
        return space


def _key(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(private_pem(rsa.generate_private_key(65537, 2048)))
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def naive_python() -> Path:
    """python-alipay-sdk lives in its own venv: it clashes with the official SDK."""
    python = NAIVE_VENV / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-naive with python-alipay-sdk (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(NAIVE_VENV)], check=True)
        subprocess.run(
            [str(NAIVE_VENV / "bin" / "pip"), "install", "-q", "python-alipay-sdk", "aiohttp"],
            check=True,
        )
    return python


def command(target: str, space: Workspace, port: int, run_dir: Path) -> list[str]:
    if target.startswith("ceiling"):
        key = str(space.root / "alipay_public.pem")
        if target == "ceiling-httptools":
            return [sys.executable, "-m", "bench.ceiling_httptools", str(port), key]
        if target == "ceiling-durable":
            log = str(run_dir / "durable.log")
            return [sys.executable, "-m", "bench.ceiling_durable", str(port), key, log]
        loop = "asyncio" if target.endswith("-asyncio") else "uvloop"
        return [sys.executable, "-m", "bench.ceiling", str(port), key, loop]
    if target == "naive":
        return [
            str(naive_python()),
            str(ROOT / "bench" / "naive_server.py"),
            str(port),
            str(run_dir / "naive.db"),
            str(space.root / "app_private.pem"),
            str(space.root / "alipay_public.pem"),
        ]
    config = run_dir / "subgate.toml"
    loop = "asyncio" if target.endswith("-asyncio") else "auto"
    workers = intake_workers(target)
    # With workers the load goes to the intake port they share; the primary keeps its own port.
    server = f"intake_workers = {workers}\nintake_port = {port}\n" if workers else ""
    config.write_text(
        f'[server]\nnotify_max_age_seconds = 2592000\nevent_loop = "{loop}"\n{server}'
        f'[storage]\nurl = "sqlite:///{run_dir}/subgate.db"\n'
        f'synchronous = "FULL"\n[[apps]]\napp_id = "{APP_ID}"\n'
        f'alipay_public_key = "{space.root / "alipay_public.pem"}"\n'
    )
    return serve_command(config, free_port() if workers else port)


def intake_workers(target: str) -> int:
    """``subgate-w2`` -> 2; any other target -> 0."""
    prefix = "subgate-w"
    return int(target.removeprefix(prefix)) if target.startswith(prefix) else 0


def serve_command(config: Path, port: int) -> list[str]:
    """``run.py serve`` as production runs it (log level WARNING: no per-request lines)."""
    return [
        sys.executable,
        str(ROOT / "run.py"),
        "--config",
        str(config),
        "--log-level",
        "WARNING",
        "serve",
        "--port",
        str(port),
    ]


def stored_rows(target: str, run_dir: Path) -> int | None:
    if target.startswith("ceiling"):
        return None
    database = "naive.db" if target == "naive" else "subgate.db"
    with sqlite3.connect(run_dir / database) as db:
        return int(db.execute("SELECT count(*) FROM notifications").fetchone()[0])


def measure(
    target: str,
    connections: int,
    space: Workspace,
    plan: Plan,
    bodies: Path,
    index: int,
    attempt: int = 0,
) -> dict[str, Any]:
    """Round ``index`` of ``target`` (its ``attempt``-th try), on a store of its own."""
    name = f"{target}-c{connections}-{index}" + (f"-{attempt}" if attempt else "")
    run_dir = fresh_run_dir(space.root, name)
    port = free_port()
    url = f"http://127.0.0.1:{port}/alipay/notify"
    with serving(command(target, space, port, run_dir), port, ROOT, run_dir / "server.log") as proc:
        if plan.pin:
            pin_threads(proc.pid)
        run_wrk(url, bodies, connections, 2, offset=plan.bodies // 2)  # warm-up on other ids
        # One-process Subgate only: the others have no /metrics on the port under load. Scraped
        # outside the measured window, whose CPU and loop shares are the load's alone.
        one_process = target.startswith("subgate") and not intake_workers(target)
        commits_before = CommitTotals.scrape(port) if one_process else None
        before, load_before = tree_cpu_seconds(proc.pid), _children_cpu()
        threads_before, switches = thread_usage(proc.pid), SwitchCount(proc.pid).start()
        started = time.monotonic()  # the threads' readings' own span, for the loop's shares
        watch = Foreign(proc.pid)
        result = run_wrk(url, bodies, connections, plan.seconds, offset=0)
        foreign = watch.stop()
        threads = thread_usage(proc.pid) - threads_before
        window = time.monotonic() - started
        cpu, load_cpu = tree_cpu_seconds(proc.pid) - before, _children_cpu() - load_before
        commits_after = CommitTotals.scrape(port) if one_process else None
        machine = {"context_switches_per_request": switches.per_request(result.requests)}
        if index == 0:  # the first round only: strace once per target and concurrency
            probe_offset = plan.bodies * 3 // 4  # ids neither the run nor the warm-up posted
            machine |= syscall_probe(
                proc.pid,
                lambda: run_wrk(url, bodies, connections, PROBE_SECONDS, probe_offset).requests,
            )
    rows = stored_rows(target, run_dir)
    return {
        **result.as_dict(),
        "overran_seconds": round(max(0.0, result.seconds - plan.seconds), 2),  # a stall shows here
        "cpu_us_per_request": round(cpu / max(result.requests, 1) * 1e6, 1),
        # How much of the 2 cores the server and wrk used: near 2.0 means the box is saturated.
        "server_cores": round(cpu / result.seconds, 2),
        "wrk_cores": round(load_cpu / result.seconds, 2),
        "stored_rows": rows,
        # The server's own process (with intake workers: the primary's), thread by thread.
        **threads.per_request(result.requests),
        **threads.shares(window),  # the loop's wall time: running, waiting for a core, idle
        # The whole process tree: switches in this run, system calls in a probe after it.
        **machine,
        **foreign,  # others' work on the machine meanwhile (bench/quiet.py)
        # What its loop waited for: the group commit's batches (bench/commits.py).
        **commit_stats(commits_before, commits_after, result.requests, result.seconds),
    }


def quietest_round(
    target: str, connections: int, space: Workspace, plan: Plan, bodies: Path, index: int
) -> dict[str, Any]:
    """Round ``index`` of ``target``, taken again while the host or others disturbed it
    (``bench/quiet.py``): ratios are judged on rounds paired side by side, and a ceiling slowed
    by the host would pass a Subgate round that was no faster."""
    attempts = itertools.count()
    return least_disturbed(
        lambda: measure(target, connections, space, plan, bodies, index, next(attempts))
    )


def _children_cpu() -> float:
    """CPU seconds of waited-for children: wrk runs to completion, the server is still alive."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def signed_bodies(space: Workspace, count: int) -> Path:
    """``count`` signed notifications, one per line, cached in bench/.cache."""
    return make_bodies(
        CACHE / f"bodies-{count}.txt", count, space.alipay_key, APP_ID, datetime.now(UTC)
    )


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    space = Workspace.create(workdir)
    bodies = signed_bodies(space, plan.bodies)
    results: dict[str, Any] = {}
    for connections in plan.connections:
        # Round-robin: each round runs every target once, so a drift in the machine's speed
        # (bench/README.md) shifts all targets alike instead of whichever happened to run later.
        runs: dict[str, list[dict[str, Any]]] = {target: [] for target in plan.targets}
        for index in range(plan.runs):
            for target in plan.targets:
                started = time.monotonic()
                result = quietest_round(target, connections, space, plan, bodies, index)
                runs[target].append(result)
                print(
                    f"  {target:8} c{connections:<3} #{index + 1}: {result['rps']:>8.0f} req/s "
                    f"p99 {result['p99_ms']:6.1f} ms ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        for target in plan.targets:
            results[f"{target}@c{connections}"] = median_of(runs[target])
    return results
