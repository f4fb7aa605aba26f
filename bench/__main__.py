"""python -m bench [--quick] [--seconds S] [--runs N] [--pin] [--only intake,lookup,...,postgres]

Runs every benchmark (bench/README.md), writes bench/results/<name>-<time>.json for each, and
prints the numbers with their ratios and targets last. ``--only`` also takes intake's targets
(``ceiling``, ``naive``, ``subgate``, ...; ``intake`` is all of them). Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import console, delivery, intake, lookup, postgres, scaling, sends
from bench.processes import REST_CPU
from bench.quiet import least_disturbed
from bench.report import speed_probe, write_results

# Whatever intake measures by default (ceiling, naive, subgate, and any variants it adds).
INTAKE_TARGETS = intake.Plan(seconds=0, runs=0, connections=(), bodies=0).targets
BENCHMARKS = ("intake", "lookup", "sends", "scaling", "delivery", "console", "postgres")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small and short: a harness check")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--runs", type=int, default=3, help="rounds of intake, sends and scaling")
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
                elif name in ("delivery", "postgres"):
                    run = delivery.run_benchmark if name == "delivery" else postgres.run_benchmark
                    body = run(args.quick, seconds, workdir / name, args.runs)
                else:
                    body = RUNNERS[name](args.quick, seconds, workdir / name)
                body["rsa2048_signs_per_second"] = {"before": before, "after": speed_probe()}
                summaries.append((name, body, write_results(name, body)))
    print()
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
    ratios = intake.ratios(results)
    return {
        "plan": {
            "seconds": plan.seconds,
            "runs": plan.runs,
            "connections": plan.connections,
            "pinned": plan.pin,
        },
        "intake": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()},
        "runs": {k: v["runs"] for k, v in results.items()},
        "ratios": ratios,
        "targets": intake.targets(results, ratios),
    }


def run_lookup(quick: bool, seconds: float, workdir: Path) -> dict[str, Any]:
    plan = lookup.LookupPlan(
        users=100_000 if quick else 1_000_000,
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


# (connections, call worker processes, name suffix). The first two: 64 senders in a closed loop,
# so sent/s = 64 / time per send (in-process, one GIL bounds it; with a call worker, the two
# group commits and the round trip each send waits for). The last is the capacity view: enough
# senders to keep every stage busy, with the calls on two worker processes.
SEND_SETUPS = ((64, 0, ""), (64, 1, "-callers1"), (256, 2, "-c256-callers2"))
SENDS_BASELINE = ""  # the setup every other one is compared with, round by round


def run_sends(quick: bool, seconds: float, workdir: Path, runs: int = 3) -> dict[str, Any]:
    """Two loads: every attempt holds a credit (clean), and the spend-once stress (contended);
    each in every ``SEND_SETUPS``: 64 senders with every call made in the server process, the
    same with one call worker process, and 256 senders with two call workers.

    Each round runs every plan once, one after the other, so that the machine's drift spreads
    over all of them; each plan reports its median round, and each setup's effect is the median
    of its per-round ratios to the in-process plan (a ratio only means something within one
    round)."""
    users = 20_000 if quick else 100_000
    loads = {"clean": (0, 0), "contended": (1, 2)}  # (extra keys, duplicates) per user
    plans = {
        f"{load}{suffix}": sends.SendsPlan(
            f"{load}{suffix}",
            users,
            3,
            extra=extra,
            duplicates=duplicates,
            seconds=seconds,
            connections=connections,
            call_processes=callers,
        )
        for load, (extra, duplicates) in loads.items()
        for connections, callers, suffix in SEND_SETUPS
    }
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
    for number in range(1 if quick else runs):
        for name, plan in plans.items():

            def measure(name: str = name, plan: sends.SendsPlan = plan) -> dict[str, Any]:
                run_dir = workdir / f"{name}-{time.monotonic_ns()}"
                run_dir.mkdir()
                return sends.run(plan, run_dir)

            print(f"  round {number + 1}:", end="", flush=True)
            rounds[name].append(least_disturbed(measure))
    report: dict[str, Any] = {"plans": list(plans), "targets": {}, "rounds": {}, "ratios": {}}
    for name, results in rounds.items():
        ordered = sorted(results, key=lambda r: r["sends_per_second"])
        report[name] = ordered[len(ordered) // 2]
        report["rounds"][name] = [r["sends_per_second"] for r in results]
        balanced = all(r["targets"]["zero_double_spends"] == "met" for r in results)
        report[name]["targets"]["zero_double_spends"] = "met" if balanced else "MISSED"
        report["targets"] |= {f"{name}: {k}": v for k, v in report[name]["targets"].items()}
    labels = {
        suffix: _setup_label(connections, callers) for connections, callers, suffix in SEND_SETUPS
    }
    for load in loads:
        baseline = rounds[f"{load}{SENDS_BASELINE}"]
        for suffix, label in labels.items():
            if suffix == SENDS_BASELINE:
                continue
            pairs = zip(rounds[f"{load}{suffix}"], baseline, strict=True)
            per_round = [
                round(w["sends_per_second"] / max(o["sends_per_second"], 1), 3) for w, o in pairs
            ]
            report["ratios"][f"{load}: {label} / {labels[SENDS_BASELINE]}"] = {
                "per_round": per_round,
                "median": sorted(per_round)[len(per_round) // 2],
            }
    return report


def _setup_label(connections: int, callers: int) -> str:
    workers = "in-process" if callers == 0 else f"{callers} call worker{'s' if callers > 1 else ''}"
    return f"{connections} senders, {workers}"


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
RUNNERS = {"lookup": run_lookup, "console": console.run_benchmark}


def print_intake(report: dict[str, Any]) -> None:
    for name, entry in report["intake"].items():
        print(
            f"  {name:20} {entry['rps']:>9.0f} req/s  p50 {entry['p50_ms']:6.2f} ms  "
            f"p99 {entry['p99_ms']:6.2f} ms  cpu {entry['cpu_us_per_request']:6.0f} us/req "
            f"(loop {entry['loop_cpu_us_per_request']:4.0f}, "
            f"{entry['loop_switches_per_request']:.2f} waits/req)  errors {entry['errors']}"
        )
    print("  ratios:")
    for name, value in report["ratios"].items():
        print(f"    {name:30} {value:.3f}")
    _targets(report)


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
    for label, key in (
        ("Python API single", "python_api_single"),
        ("HTTP bulk 1,000", "http_bulk_1000"),
        ("Python API bulk 1,000", "python_api_bulk_1000"),
    ):
        entry = report[key]
        print(f"  {label:22} p50 {entry['p50_ms']:.3f} ms  p99 {entry['p99_ms']:.3f} ms")
    _targets(report)


def print_sends(report: dict[str, Any]) -> None:
    for name in report["plans"]:
        run, books = report[name], report[name]["books"]
        attempts, server = run["attempts"], run["server_reserve_to_sent"]
        print(
            f"  {name:24} {run['sends_per_second']:>6.0f} sent/s; attempts {attempts['rps']:.0f}/s "
            f"p50 {attempts['p50_ms']:.1f} ms p99 {attempts['p99_ms']:.1f} ms; "
            f"server reserve->sent p50 {server['p50_ms']:.0f} ms p99 {server['p99_ms']:.0f} ms"
        )
        print(
            f"  {'':9} platform calls {books['platform_calls']} = credits spent "
            f"{books['credits_spent']} = sent {books['messages'].get('sent', 0)}; double spends "
            f"{books['double_spent_messages']}; users over credit {books['users_over_credit']}; "
            f"balanced {books['balanced']}"
        )
        print(f"  {'':9} sent/s by round: {report['rounds'][name]}")
    for name, ratio in report["ratios"].items():
        print(f"  {name}: median {ratio['median']:.2f} (by round {ratio['per_round']})")
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
