"""python -m bench [--quick] [--seconds S] [--runs N] [--users N] [--pin] [--only intake,lookup,...]

Runs every benchmark (bench/README.md), writes bench/results/<name>-<time>.json for each, and
prints the numbers with their ratios and targets last. ``--only`` also takes intake's targets
(``ceiling``, ``naive``, ``subgate``, ...; ``intake`` is all of them). Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from bench import console, delivery, intake, intake_targets, lookup, postgres, scaling
from bench.machine import cpu_model, idle_setup
from bench.processes import REST_CPU
from bench.quiet import describe as describe_disturbance
from bench.report import speed_probe, write_results
from bench.sends_rounds import print_sends, run_sends
from bench.syscalls import syscalls_line

# Whatever intake measures by default (ceiling, naive, subgate, and any variants it adds).
INTAKE_TARGETS = intake.Plan(seconds=0, runs=0, connections=(), bodies=0).targets
BENCHMARKS = ("intake", "lookup", "sends", "scaling", "delivery", "console", "postgres")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small and short: a harness check")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--runs", type=int, default=3, help="rounds of intake, sends and scaling")
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="lookup: users in the ledger (default 1,000,000; --quick: 100,000)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="intake: the server's event-loop thread on CPU 0, all else on CPU 1 (steadier A/B)",
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"any of {', '.join(BENCHMARKS)}; or intake's targets: {', '.join(INTAKE_TARGETS)}",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHMARKS) - set(INTAKE_TARGETS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    targets = tuple(t for t in INTAKE_TARGETS if "intake" in chosen or t in chosen)
    if args.pin:
        others = [name for name in chosen if name in BENCHMARKS and name != "intake"]
        workers = [t for t in targets if intake.intake_workers(t)]
        if others:
            parser.error(f"--pin is for intake only; leave out {', '.join(others)}")
        if workers:
            parser.error(f"--pin is for one-process targets; leave out {', '.join(workers)}")
        os.sched_setaffinity(0, {REST_CPU})  # the bench and the wrk it starts
    seconds = 3.0 if args.quick else args.seconds
    summaries: list[tuple[str, Any, Path]] = []
    with tempfile.TemporaryDirectory(prefix="subgate-bench-") as tmp:
        workdir = Path(tmp)
        if targets:
            before = speed_probe()
            body = run_intake(
                targets, args.quick, seconds, args.runs, workdir / "intake", pin=args.pin
            )
            body["rsa2048_signs_per_second"] = {"before": before, "after": speed_probe()}
            summaries.append(("intake", body, write_results("intake", body)))
        for name in BENCHMARKS[1:]:
            if name in chosen:
                print(f"{name} ...", flush=True)
                (workdir / name).mkdir()
                before = speed_probe()
                if name == "sends":
                    body = run_sends(args.quick, seconds, workdir / name, args.runs)
                elif name == "scaling":
                    body = run_scaling(args.quick, seconds, workdir / name, args.runs)
                elif name == "lookup":
                    body = run_lookup(args.quick, seconds, workdir / name, args.users)
                elif name in ("delivery", "postgres"):
                    run = delivery.run_benchmark if name == "delivery" else postgres.run_benchmark
                    body = run(args.quick, seconds, workdir / name, args.runs)
                else:
                    body = RUNNERS[name](args.quick, seconds, workdir / name)
                body["rsa2048_signs_per_second"] = {"before": before, "after": speed_probe()}
                summaries.append((name, body, write_results(name, body)))
    print(f"\nmachine: {cpu_model()}, {os.cpu_count()} CPUs, idle: {idle_setup()}")
    for name, body, path in summaries:
        speed = body["rsa2048_signs_per_second"]
        print(f"{name}: {path}  (machine speed: {speed['before']}/{speed['after']} RSA signs/s)")
        PRINTERS[name](body)


def run_intake(
    targets: tuple[str, ...],
    quick: bool,
    seconds: float,
    runs: int,
    workdir: Path,
    *,
    pin: bool = False,
) -> dict[str, Any]:
    plan = intake.Plan(
        seconds=seconds,
        runs=1 if quick else runs,
        connections=(64, 8),
        bodies=60_000 if quick else 150_000,
        targets=targets,
        pin=pin,
    )
    results = intake.run(plan, workdir)
    ratio = intake_targets.ratios(results)
    return {
        "plan": {
            "seconds": plan.seconds,
            "runs": plan.runs,
            "connections": plan.connections,
            "pinned": plan.pin,
        },
        "intake": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
        "runs": {k: v["runs"] for k, v in results.items()},
        "ratios": ratio,
        "targets": intake_targets.targets(ratio),
        "why": intake_targets.why(results),
    }


def run_lookup(
    quick: bool, seconds: float, workdir: Path, users: int | None = None
) -> dict[str, Any]:
    plan = lookup.LookupPlan(
        users=users or (100_000 if quick else 1_000_000),
        seconds=seconds,
        loads=(
            lookup.Load(1),
            lookup.Load(8),
            lookup.Load(64),
            lookup.Load(16, pace_ms=8),  # about 1,900 req/s: a moderate, not saturating, load
        ),
        api_calls=2_000 if quick else 20_000,
        bulk_requests=30 if quick else 200,
        check_users=200 if quick else 2_000,
    )
    return lookup.run(plan, workdir)


def run_scaling(quick: bool, seconds: float, workdir: Path, rounds: int) -> dict[str, Any]:
    plan = scaling.ScalingPlan(
        sizes=(0, 100_000) if quick else (0, 10_000, 100_000, 1_000_000),
        seconds=seconds,
        connections=64,
        bodies=60_000 if quick else 150_000,
        rounds=1 if quick else rounds,
    )
    return scaling.run(plan, workdir)


# sends and scaling also take the rounds
RUNNERS = {"console": console.run_benchmark}


def _stalls(entry: dict[str, Any]) -> str:
    stalled = entry.get("stalled_rounds", 0)
    return f"; {stalled} round(s) stalled (wrk's run outlasted its time)" if stalled else ""


def print_intake(report: dict[str, Any]) -> None:
    for name, entry in report["intake"].items():
        print(
            f"  {name:20} {entry['rps']:>9.0f} req/s  p50 {entry['p50_ms']:6.2f} ms  "
            f"p99 {entry['p99_ms']:6.2f} ms  cpu {entry['cpu_us_per_request']:6.0f} us/req "
            f"(loop {entry['loop_cpu_us_per_request']:4.0f}, "
            f"{entry['loop_switches_per_request']:.2f} waits/req)  errors {entry['errors']}"
        )
        print(
            f"  {'':20} {entry['context_switches_per_request']:.2f} context switches/req, "
            f"{syscalls_line(entry)}; {describe_disturbance(entry)}{_stalls(entry)}"
        )
    print("  ratios:")
    for name, value in report["ratios"].items():
        print(f"    {name:30} {value:.3f}")
    _targets(report)
    for name, factors in report.get("why", {}).items():
        print(f"  why {name}: {factors}")


def print_lookup(report: dict[str, Any]) -> None:
    users = report["ledger"]["users"]
    print(f"  ledger: {users:,} users, {report['ledger']['keys']:,} keys")
    for name, entry in report["http_single"].items():
        print(
            f"  HTTP single {name:13} {entry['rps']:>8.0f} req/s  p50 {entry['p50_ms']:.2f} ms  "
            f"p99 {entry['p99_ms']:.2f} ms  errors {entry['errors']}"
        )
    for name, entry in report["http_single_ceiling"].items():
        print(
            f"  ceiling     {name:13} {entry['rps']:>8.0f} req/s  p50 {entry['p50_ms']:.2f} ms  "
            f"p99 {entry['p99_ms']:.2f} ms  (Subgate's p99 / ceiling's: "
            f"{report['p99_vs_ceiling'][name]:.2f})"
        )
    for label, key in (("Subgate", "http_single"), ("ceiling", "http_single_ceiling")):
        for name, entry in report[key].items():
            print(
                f"  {label:11} {name:13} {entry['context_switches_per_request']:.2f} context "
                f"switches/req"
                + (f", {syscalls_line(entry)}" if "syscalls_per_request" in entry else "")
            )
    for name, ratio in report["p99_vs_ceiling"].items():
        print(
            f"  ratio {name}: Subgate's p99 / the lookup ceiling's {ratio:.2f}, throughput "
            f"{report['rps_vs_ceiling'][name]:.3f} of the ceiling's (no target: what a store costs)"
        )
    for label, key in (
        ("Python API single", "python_api_single"),
        ("HTTP bulk 1,000", "http_bulk_1000"),
        ("Python API bulk 1,000", "python_api_bulk_1000"),
    ):
        entry = report[key]
        print(f"  {label:22} p50 {entry['p50_ms']:.3f} ms  p99 {entry['p99_ms']:.3f} ms")
    _targets(report)


def print_scaling(report: dict[str, Any]) -> None:
    for size, entry in report["points"].items():
        prefill = entry["bytes_per_notification_prefill"]
        print(
            f"  {int(size):>9,} rows  {entry['rps']:>7.0f} req/s (rounds {entry['rps_by_round']})  "
            f"p99 {entry['p99_ms']:6.1f} ms  "
            f"intake {entry['bytes_per_notification_intake']:.0f} B/notification"
            + (f"  pre-fill {prefill:.0f} B/notification" if prefill else "")
        )
    print(
        f"  rps largest / empty: {report['rps_largest_vs_first']:.3f} "
        f"(median of the rounds' {report['rps_largest_vs_first_by_round']})"
    )
    _targets(report)


def _targets(report: dict[str, Any]) -> None:
    for name, outcome in report["targets"].items():
        print(f"  target {name}: {outcome}")


PRINTERS = {
    "console": console.print_summary,
    "delivery": delivery.print_summary,
    "postgres": postgres.print_summary,
    "intake": print_intake,
    "lookup": print_lookup,
    "sends": print_sends,
    "scaling": print_scaling,
}


if __name__ == "__main__":
    main()
