"""python -m bench [--quick] [--seconds S] [--runs N] [--only ceiling,naive,subgate]

Writes bench/results/intake-<time>.json and prints the ratios last. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.intake import Plan, ratios, run

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 repetition")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="ceiling,naive,subgate")
    args = parser.parse_args()
    seconds, runs = (3.0, 1) if args.quick else (args.seconds, args.runs)
    plan = Plan(
        seconds=seconds,
        runs=runs,
        connections=(64, 8),
        bodies=150_000 if not args.quick else 60_000,
        targets=tuple(args.only.split(",")),
    )
    with tempfile.TemporaryDirectory(prefix="subgate-bench-") as workdir:
        results = run(plan, Path(workdir))
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "plan": {"seconds": plan.seconds, "runs": plan.runs, "connections": plan.connections},
        "intake": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
        "runs": {k: v["runs"] for k, v in results.items()},
        "ratios": ratios(results),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"intake-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nresults: {out}")
    for name, entry in report["intake"].items():
        print(
            f"  {name:14} {entry['rps']:>9.0f} req/s  p50 {entry['p50_ms']:6.2f} ms  "
            f"p99 {entry['p99_ms']:6.2f} ms  cpu {entry['cpu_us_per_request']:6.0f} us/req  "
            f"errors {entry['errors']}"
        )
    print("ratios:")
    for name, value in report["ratios"].items():
        print(f"  {name:24} {value:.3f}")


if __name__ == "__main__":
    main()
