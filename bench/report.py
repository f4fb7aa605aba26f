"""What every benchmark shares: percentiles, the machine description, and the JSON results file."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.machine import cpu_model, idle_setup

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (need not be sorted); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max in milliseconds, and the count."""
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms, default=0.0), 3),
    }


def speed_probe(seconds: float = 0.5) -> float:
    """RSA-2048 signatures per second on one core right now: this VM's speed drifts by tens of
    per cent over an hour, so every result carries it (the issue quotes about 4,400/s)."""
    key = rsa.generate_private_key(65537, 2048)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        key.sign(b"speed probe", padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return round(count / (time.perf_counter() - started))


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_idle": idle_setup(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],  # others' work shows here
    }


def write_results(name: str, body: dict[str, Any]) -> Path:
    """bench/results/<name>-<time>.json, with when and on what it ran."""
    now = datetime.now(UTC)
    report = {"when": now.isoformat(timespec="seconds"), "machine": machine(), **body}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{now:%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return out


def verdict(
    value: float, target: float, *, below: bool, unit: str = "", inclusive: bool = False
) -> str:
    """``<value> (target <sign> <target>): met`` or ``...: MISSED by x%``, for a target that
    ``value`` must stay below (``inclusive``: or at) or reach: every target line says what was
    measured and against what, not only whether it held."""
    met = (value <= target if inclusive else value < target) if below else value >= target
    sign = ("<=" if inclusive else "<") if below else ">="
    said = f"{figure(value)}{unit} (target {sign} {figure(target)}{unit})"
    if met:
        return f"{said}: met"
    off = (value / target - 1) * 100 if below else (1 - value / target) * 100
    return f"{said}: MISSED by {off:.0f}%"


def figure(value: float) -> str:
    """A measured value as the summary prints it: 1,699 / 14.7 / 0.935 / 0.05."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
