"""Notification intake: Subgate against the verify-only ceiling and the naive peer, side by side.

Each target runs as its own process on a fresh database, loaded by wrk from another process with
distinct signed notifications. Ratios, measured in the same run, are what the targets are about.
"""

from __future__ import annotations

import resource
import sqlite3
import statistics
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
from bench.load import run_wrk
from bench.processes import free_port, pin_threads, serving, thread_usage, tree_cpu_seconds
from bench.report import verdict

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
        return [
            sys.executable,
            "-m",
            "bench.ceiling",
            str(port),
            str(space.root / "alipay_public.pem"),
            "asyncio" if target.endswith("-asyncio") else "uvloop",
        ]
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
    target: str, connections: int, space: Workspace, plan: Plan, bodies: Path, index: int
) -> dict[str, Any]:
    run_dir = space.root / f"{target}-c{connections}-{index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/alipay/notify"
    with serving(command(target, space, port, run_dir), port, ROOT, run_dir / "server.log") as proc:
        if plan.pin:
            pin_threads(proc.pid)
        run_wrk(url, bodies, connections, 2, offset=plan.bodies // 2)  # warm-up on other ids
        before, load_before = tree_cpu_seconds(proc.pid), _children_cpu()
        threads_before = thread_usage(proc.pid)
        result = run_wrk(url, bodies, connections, plan.seconds, offset=0)
        threads = thread_usage(proc.pid) - threads_before
        cpu, load_cpu = tree_cpu_seconds(proc.pid) - before, _children_cpu() - load_before
    rows = stored_rows(target, run_dir)
    return {
        **result.as_dict(),
        "cpu_us_per_request": round(cpu / max(result.requests, 1) * 1e6, 1),
        # How much of the 2 cores the server and wrk used: near 2.0 means the box is saturated.
        "server_cores": round(cpu / result.seconds, 2),
        "wrk_cores": round(load_cpu / result.seconds, 2),
        "stored_rows": rows,
        # The server's own process (with intake workers: the primary's), thread by thread.
        **threads.per_request(result.requests),
    }


def _children_cpu() -> float:
    """CPU seconds of waited-for children: wrk runs to completion, the server is still alive."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "rps",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "cpu_us_per_request",
        "server_cores",
        "wrk_cores",
        "loop_cpu_us_per_request",
        "loop_switches_per_request",
        "other_threads_cpu_us_per_request",
    )
    summary = {k: round(statistics.median(r[k] for r in results), 2) for k in keys}
    summary["errors"] = sum(r["errors"] for r in results)
    summary["runs"] = results
    return summary


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
                result = measure(target, connections, space, plan, bodies, index)
                runs[target].append(result)
                print(
                    f"  {target:8} c{connections:<3} #{index + 1}: {result['rps']:>8.0f} req/s "
                    f"p99 {result['p99_ms']:6.1f} ms ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
        for target in plan.targets:
            results[f"{target}@c{connections}"] = median_of(runs[target])
    return results


def ratios(results: dict[str, Any]) -> dict[str, float]:
    def get(name: str, key: str) -> float | None:
        entry = results.get(name)
        return None if entry is None else float(entry[key])

    out: dict[str, float] = {}
    pairs = [
        ("intake_vs_ceiling_c64", "subgate@c64", "ceiling@c64", "rps"),
        ("intake_vs_naive_c64", "subgate@c64", "naive@c64", "rps"),
        ("p99_vs_ceiling_c64", "subgate@c64", "ceiling@c64", "p99_ms"),
        ("intake_vs_ceiling_c8", "subgate@c8", "ceiling@c8", "rps"),
        ("p99_vs_ceiling_c8", "subgate@c8", "ceiling@c8", "p99_ms"),
        ("asyncio_intake_vs_ceiling_c64", "subgate-asyncio@c64", "ceiling-asyncio@c64", "rps"),
        ("asyncio_p99_vs_ceiling_c64", "subgate-asyncio@c64", "ceiling-asyncio@c64", "p99_ms"),
        ("asyncio_intake_vs_ceiling_c8", "subgate-asyncio@c8", "ceiling-asyncio@c8", "rps"),
        ("w1_intake_vs_single_c64", "subgate-w1@c64", "subgate@c64", "rps"),
        ("w2_intake_vs_single_c64", "subgate-w2@c64", "subgate@c64", "rps"),
        ("w1_intake_vs_ceiling_c64", "subgate-w1@c64", "ceiling@c64", "rps"),
        ("w2_intake_vs_ceiling_c64", "subgate-w2@c64", "ceiling@c64", "rps"),
        ("w1_intake_vs_naive_c64", "subgate-w1@c64", "naive@c64", "rps"),
        ("w2_intake_vs_naive_c64", "subgate-w2@c64", "naive@c64", "rps"),
        ("w1_p99_vs_ceiling_c64", "subgate-w1@c64", "ceiling@c64", "p99_ms"),
        ("w2_p99_vs_ceiling_c64", "subgate-w2@c64", "ceiling@c64", "p99_ms"),
        ("ceiling_vs_naive_c64", "ceiling@c64", "naive@c64", "rps"),  # the most 10x can be
    ]
    for name, top, bottom, key in pairs:
        a, b = get(top, key), get(bottom, key)
        if a is not None and b:
            out[name] = round(a / b, 3)
    return out


# The targets, judged on the ratios of one run. Each Subgate setup is judged on its own:
# one process, and with one or two intake workers (the stretch target's design).
WORKERS_VS_SINGLE = 1.4
P99_C8_MS = 5.0
RATIO_TARGETS = (  # (ratio, target, bound, whether the ratio must stay below the bound)
    ("intake_vs_ceiling_c64", "intake_at_least_0.9x_ceiling_c64", 0.9, False),
    ("intake_vs_naive_c64", "intake_at_least_10x_naive_c64", 10.0, False),
    ("p99_vs_ceiling_c64", "p99_under_1.5x_ceiling_c64", 1.5, True),
)
SETUPS = (("", "subgate"), ("w1_", "subgate-w1"), ("w2_", "subgate-w2"))  # (ratio prefix, name)


def targets(results: dict[str, Any], ratio: dict[str, float]) -> dict[str, str]:
    """``met`` or ``MISSED by x%`` for every intake target this run measured."""
    out: dict[str, str] = {}
    for prefix, name in SETUPS:
        label = f"{name}: " if prefix else ""
        for key, target, bound, below in RATIO_TARGETS:
            if prefix + key in ratio:
                out[label + target] = verdict(ratio[prefix + key], bound, below=below)
        c8 = results.get(f"{name}@c8")
        if c8 is not None:
            out[f"{label}p99_c8_under_{P99_C8_MS:.0f}ms"] = verdict(
                float(c8["p99_ms"]), P99_C8_MS, below=True
            )
    scaling = [
        ratio[f"{prefix}intake_vs_single_c64"]
        for prefix, _ in SETUPS[1:]
        if f"{prefix}intake_vs_single_c64" in ratio
    ]
    if scaling:
        out[f"intake_workers_at_least_{WORKERS_VS_SINGLE}x_one_process_c64"] = verdict(
            max(scaling), WORKERS_VS_SINGLE, below=False
        )
    return out
