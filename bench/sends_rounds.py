"""The sends benchmark's rounds: every plan of ``bench/sends.py`` and the send ceiling, together.

Each round measures the send ceiling (``bench.send_ceiling``) at every concurrency a plan uses,
then runs every plan once, one after the other, so that the machine's drift spreads over all of
them. Subgate's gated sends are reported as a fraction of the ceiling at the same concurrency in
the same round (a ratio only means something within one round), with their absolute rates and
the books of every run (zero double spends).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import send_ceiling_run, sends
from bench.quiet import least_disturbed
from bench.report import verdict
from bench.syscalls import syscalls_line

# (connections, call worker processes, name suffix). The first two: 64 senders in a closed loop,
# so sent/s = 64 / time per send (in-process, one GIL bounds it; with a call worker, the two
# group commits and the round trip each send waits for). The last is the capacity view: enough
# senders to keep every stage busy, with the calls on two worker processes.
SEND_SETUPS = ((64, 0, ""), (64, 1, "-callers1"), (256, 2, "-c256-callers2"))
SENDS_BASELINE = ""  # the setup every other one is compared with, round by round
LOADS = {"clean": (0, 0), "contended": (1, 2)}  # (extra keys, duplicates) per user
VS_CEILING_TARGET = 0.6
JUDGED_LOAD = "clean"  # the contended load refuses half its attempts by design: shown, not judged


def plans(users: int, seconds: float) -> dict[str, sends.SendsPlan]:
    return {
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
        for load, (extra, duplicates) in LOADS.items()
        for connections, callers, suffix in SEND_SETUPS
    }


def run_sends(quick: bool, seconds: float, workdir: Path, runs: int = 3) -> dict[str, Any]:
    """Two loads: every attempt holds a credit (clean), and the spend-once stress (contended);
    each in every ``SEND_SETUPS``; and the ceiling at each setup's concurrency, every round."""
    measured = plans(20_000 if quick else 100_000, seconds)
    senders = sorted({connections for connections, _, _ in SEND_SETUPS})
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in measured}
    ceilings: dict[int, list[dict[str, Any]]] = {c: [] for c in senders}
    for number in range(1 if quick else runs):
        for count in senders:
            ceilings[count].append(least_disturbed(_ceiling(count, seconds, workdir, number == 0)))
            rate = ceilings[count][-1]["sends_per_second"]
            print(f"  round {number + 1}: send ceiling, {count} senders: {rate:.0f} sent/s")
        for name, plan in measured.items():
            probed = sends.SendsPlan(**{**plan.__dict__, "syscall_probe": number == 0})
            print(f"  round {number + 1}:", end="", flush=True)
            rounds[name].append(least_disturbed(_plan(probed, workdir)))
    report: dict[str, Any] = {"plans": list(measured), "targets": {}, "rounds": {}, "ratios": {}}
    report["ceiling"] = {f"c{c}": _median(runs) for c, runs in ceilings.items()}
    report["ceiling_rounds"] = {
        f"c{c}": [r["sends_per_second"] for r in runs] for c, runs in ceilings.items()
    }
    for name, results in rounds.items():
        report[name] = _median(results)
        report["rounds"][name] = [r["sends_per_second"] for r in results]
        spends = sum(r["books"]["double_spent_messages"] for r in results)
        balanced = sum(r["targets"]["zero_double_spends"] == "met" for r in results)
        report[name]["targets"]["zero_double_spends"] = (
            f"{spends} double spends, books balanced in {balanced} of {len(results)} runs "
            f"(target 0 and all): {'met' if balanced == len(results) else 'MISSED'}"
        )
        report["targets"] |= {f"{name}: {k}": v for k, v in report[name]["targets"].items()}
    report["vs_ceiling"] = vs_ceiling(rounds, ceilings, measured, report["targets"])
    report["ratios"] = _vs_in_process(rounds)
    return report


def _ceiling(count: int, seconds: float, workdir: Path, probe: bool) -> Any:
    def measure() -> dict[str, Any]:
        run_dir = workdir / f"ceiling-c{count}-{time.monotonic_ns()}"
        run_dir.mkdir()
        return send_ceiling_run.measure(count, seconds, run_dir, probe=probe)

    return measure


def _plan(plan: sends.SendsPlan, workdir: Path) -> Any:
    def measure() -> dict[str, Any]:
        run_dir = workdir / f"{plan.name}-{time.monotonic_ns()}"
        run_dir.mkdir()
        return sends.run(plan, run_dir)

    return measure


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round, whole (not a mix of rounds); the first round's probe kept with it."""
    ordered = sorted(results, key=lambda r: r["sends_per_second"])
    chosen = dict(ordered[len(ordered) // 2])
    for key in ("syscalls_per_request", "syscalls_top_per_request", "syscalls_note"):
        if key in results[0]:
            chosen[key] = results[0][key]
    return chosen


def ratio_by_round(top: list[float], bottom: list[float]) -> dict[str, Any]:
    """Per-round ratios of two series measured in the same rounds, and their median."""
    per_round = [round(a / max(b, 1e-9), 3) for a, b in zip(top, bottom, strict=True)]
    return {"per_round": per_round, "median": sorted(per_round)[len(per_round) // 2]}


def vs_ceiling(
    rounds: dict[str, list[dict[str, Any]]],
    ceilings: dict[int, list[dict[str, Any]]],
    measured: dict[str, sends.SendsPlan],
    targets: dict[str, str],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, results in rounds.items():
        ceiling = [r["sends_per_second"] for r in ceilings[measured[name].connections]]
        out[name] = ratio_by_round([r["sends_per_second"] for r in results], ceiling)
        if name.startswith(JUDGED_LOAD):
            targets[f"{name}: sends_at_least_{VS_CEILING_TARGET}x_send_ceiling"] = verdict(
                out[name]["median"], VS_CEILING_TARGET, below=False
            )
    return out


def _vs_in_process(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each setup's effect: the median of its per-round ratios to the in-process plan."""
    labels = {suffix: _setup_label(c, callers) for c, callers, suffix in SEND_SETUPS}
    out: dict[str, Any] = {}
    for load in LOADS:
        baseline = [r["sends_per_second"] for r in rounds[f"{load}{SENDS_BASELINE}"]]
        for suffix, label in labels.items():
            if suffix != SENDS_BASELINE:
                top = [r["sends_per_second"] for r in rounds[f"{load}{suffix}"]]
                out[f"{load}: {label} / {labels[SENDS_BASELINE]}"] = ratio_by_round(top, baseline)
    return out


def _setup_label(connections: int, callers: int) -> str:
    workers = "in-process" if callers == 0 else f"{callers} call worker{'s' if callers > 1 else ''}"
    return f"{connections} senders, {workers}"


def print_sends(report: dict[str, Any]) -> None:
    for name, entry in report["ceiling"].items():
        print(
            f"  send ceiling {name:11} {entry['sends_per_second']:>6.0f} sent/s "
            f"p50 {entry['p50_ms']:.1f} ms p99 {entry['p99_ms']:.1f} ms; "
            f"cpu {entry['cpu_us_per_send']['ceiling']:.0f} us/send "
            f"(fake {entry['cpu_us_per_send']['fake_gateway']:.0f}); "
            f"{entry['context_switches_per_send']:.2f} switches/send, {syscalls_line(entry)}"
        )
        print(f"  {'':9} sent/s by round: {report['ceiling_rounds'][name]}")
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
        print(
            f"  {'':9} Subgate {run['context_switches_per_request']:.2f} switches/attempt, "
            f"{syscalls_line(run)}; sent/s by round: {report['rounds'][name]}"
        )
    for name, ratio in report["vs_ceiling"].items():
        by_round = ratio["per_round"]
        print(f"  {name} / send ceiling: median {ratio['median']:.2f} (by round {by_round})")
    for name, ratio in report["ratios"].items():
        print(f"  {name}: median {ratio['median']:.2f} (by round {ratio['per_round']})")
    for name, outcome in report["targets"].items():
        print(f"  target {name}: {outcome}")
