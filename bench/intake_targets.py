"""Intake's targets, judged on the ratios of one run on the machine at hand.

Only ratios measured in the same run mean anything (bench/README.md), so every target is one:
one-process Subgate against the verify-only ceiling on the same event loop, at 64 and at 8
connections, in throughput and in p99; and against the naive peer, where that target can be met
at all. The ceiling stores nothing, so where it is itself under ``NAIVE_REACHABLE`` x naive
(RSA is fast next to what the naive peer does per request only on some CPUs), 10 x naive is not
a property of Subgate but of the CPU, and the line says so instead of a verdict. Each Subgate
setup is judged on its own: one process, and one or two intake workers.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.commits import describe as describe_commits
from bench.report import figure, verdict

# (ratio prefix, Subgate target, the ceiling it is compared with)
SETUPS = (
    ("", "subgate", "ceiling"),
    ("asyncio_", "subgate-asyncio", "ceiling-asyncio"),
    ("w1_", "subgate-w1", "ceiling"),
    ("w2_", "subgate-w2", "ceiling"),
)
JUDGED = ("", "w1_", "w2_")  # the asyncio pair is shown, not judged
VS_CEILING = {64: 0.9, 8: 0.8}  # throughput, at least this share of the ceiling's
P99_VS_CEILING = 1.5  # p99 at most this many times the ceiling's, at both concurrencies
VS_NAIVE = 10.0
NAIVE_REACHABLE = 11.0  # 10 x naive is judged only where the ceiling reaches this
WORKERS_VS_SINGLE = 1.4


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Every ratio the run's targets allow, rounded to three places: each the median of the
    rounds' own ratios (``paired_ratio``)."""
    pairs = [("ceiling_vs_naive_c64", "ceiling@c64", "naive@c64", "rps")]  # the most 10x can be
    for c in VS_CEILING:  # no target: Subgate beside the same work without aiohttp's machinery
        pairs.append(
            (f"intake_vs_httptools_ceiling_c{c}", f"subgate@c{c}", f"ceiling-httptools@c{c}", "rps")
        )
    for c in VS_CEILING:  # no target: Subgate beside the same work made durable before answering
        for field, kind in (("rps", "intake"), ("p99_ms", "p99")):
            pairs.append(
                (f"{kind}_vs_durable_ceiling_c{c}", f"subgate@c{c}", f"ceiling-durable@c{c}", field)
            )
    for prefix, name, ceiling in SETUPS:
        for c in VS_CEILING:
            pairs.append(
                (f"{prefix}intake_vs_ceiling_c{c}", f"{name}@c{c}", f"{ceiling}@c{c}", "rps")
            )
            pairs.append(
                (f"{prefix}p99_vs_ceiling_c{c}", f"{name}@c{c}", f"{ceiling}@c{c}", "p99_ms")
            )
        if prefix != "asyncio_":
            pairs.append((f"{prefix}intake_vs_naive_c64", f"{name}@c64", "naive@c64", "rps"))
        if prefix.startswith("w"):
            pairs.append((f"{prefix}intake_vs_single_c64", f"{name}@c64", "subgate@c64", "rps"))
    out: dict[str, float] = {}
    for key, top, bottom, field in pairs:
        if top in results and bottom in results:
            ratio = paired_ratio(results[top], results[bottom], field)
            if ratio is not None:
                out[key] = round(ratio, 3)
    return out


def paired_ratio(top: dict[str, Any], bottom: dict[str, Any], field: str) -> float | None:
    """The median of the rounds' own ratios, each round of ``top`` against the round of
    ``bottom`` that ran beside it (the rounds run round-robin): a ratio of two medians can pair
    one target's best round with the other's worst. The ratio of the summaries where the rounds
    are not kept; None where the bottom is zero."""
    pairs = paired_rounds(top, bottom)
    if pairs and all(b[field] for _, b in pairs):
        return float(statistics.median(a[field] / b[field] for a, b in pairs))
    return float(top[field]) / bottom[field] if bottom[field] else None


def paired_rounds(
    top: dict[str, Any], bottom: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each kept round of ``top`` with the round of ``bottom`` that ran beside it; none unless
    both kept the same number of rounds, at least two."""
    mine, base = top.get("runs") or [], bottom.get("runs") or []
    return list(zip(mine, base, strict=True)) if len(mine) >= 2 and len(mine) == len(base) else []


def targets(ratio: dict[str, float]) -> dict[str, str]:
    """Value, target and ``met`` / ``MISSED by x%`` for every intake target this run measured."""
    out: dict[str, str] = {}
    for prefix, name, _ in SETUPS:
        if prefix not in JUDGED:
            continue
        label = f"{name}: " if prefix else ""
        for c, share in VS_CEILING.items():
            if f"{prefix}intake_vs_ceiling_c{c}" in ratio:
                out[f"{label}intake_at_least_{share}x_ceiling_c{c}"] = verdict(
                    ratio[f"{prefix}intake_vs_ceiling_c{c}"], share, below=False
                )
            if f"{prefix}p99_vs_ceiling_c{c}" in ratio:
                out[f"{label}p99_at_most_{P99_VS_CEILING}x_ceiling_c{c}"] = verdict(
                    ratio[f"{prefix}p99_vs_ceiling_c{c}"],
                    P99_VS_CEILING,
                    below=True,
                    inclusive=True,
                )
        if f"{prefix}intake_vs_naive_c64" in ratio:
            out[f"{label}intake_at_least_10x_naive_c64"] = versus_naive(
                ratio[f"{prefix}intake_vs_naive_c64"], ratio["ceiling_vs_naive_c64"]
            )
    scaling = [
        ratio[f"{p}intake_vs_single_c64"]
        for p in ("w1_", "w2_")
        if f"{p}intake_vs_single_c64" in ratio
    ]
    if scaling:
        out[f"intake_workers_at_least_{WORKERS_VS_SINGLE}x_one_process_c64"] = verdict(
            max(scaling), WORKERS_VS_SINGLE, below=False
        )
    return out


def why(results: dict[str, Any]) -> dict[str, str]:
    """Each judged throughput ratio as the product of its two causes, from the event loops'
    threads: how much loop CPU a request costs against the ceiling's, and how much of the wall
    time the loop got to run against the ceiling's loop (the rest it waited for a core, shared
    with the load generator and the other threads, or sat idle, waiting for requests or its
    writer). Requests a second are the loop's running share over its CPU per request, so the two
    factors multiply to the ratio exactly within one round: with several rounds, the round
    explained is the one whose ratio is the median (medians taken factor by factor come from
    different rounds, and a round the host stalled can pull them apart)."""
    out: dict[str, str] = {}
    for prefix, name, ceiling in SETUPS:
        for c in VS_CEILING:
            ours, theirs = results.get(f"{name}@c{c}"), results.get(f"{ceiling}@c{c}")
            if prefix in JUDGED and ours and theirs and "loop_busy_share" in ours:
                ours_round, theirs_round, which = median_round(ours, theirs)
                out[f"{prefix}intake_vs_ceiling_c{c}"] = _factors(ours_round, theirs_round) + which
    return out


def median_round(
    ours: dict[str, Any], theirs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Subgate's round and the ceiling's round beside it (the rounds run round-robin) whose
    ratio is the median of the rounds' ratios (the lower middle of an even count), and which
    round it was; the summaries themselves where their rounds are not kept."""
    pairs = paired_rounds(ours, theirs)
    if not pairs:
        return ours, theirs, ""
    ratios = [a["rps"] / max(b["rps"], 1) for a, b in pairs]
    index = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]
    listed = ", ".join(f"{ratio:.3f}" for ratio in ratios)
    which = f"; round {index + 1} of {len(ratios)}, the median of the rounds' {listed}"
    return *pairs[index], which


def _factors(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    cost = theirs["loop_cpu_us_per_request"] / max(ours["loop_cpu_us_per_request"], 0.1)
    time_used = ours["loop_busy_share"] / max(theirs["loop_busy_share"], 0.001)
    return (
        f"{ours['rps'] / max(theirs['rps'], 1):.3f} ~ loop cost {cost:.3f} "
        f"({theirs['loop_cpu_us_per_request']:.0f} against {ours['loop_cpu_us_per_request']:.0f} "
        f"us a request) x loop time {time_used:.3f} (running {_split(ours)}; the ceiling's "
        f"{_split(theirs)}){describe_commits(ours)}"
    )


def _split(entry: dict[str, Any]) -> str:
    return (
        f"{entry['loop_busy_share']:.0%}, waiting for a core {entry['loop_waiting_share']:.0%}, "
        f"idle {entry['loop_idle_share']:.0%}"
    )


def versus_naive(subgate: float, ceiling: float) -> str:
    """The 10 x naive verdict, or why it does not apply on this machine."""
    if ceiling < NAIVE_REACHABLE:
        return (
            f"{figure(subgate)} x naive: not applicable: ceiling is only {figure(ceiling)} x naive "
            f"(judged where the ceiling reaches {figure(NAIVE_REACHABLE)} x)"
        )
    return verdict(subgate, VS_NAIVE, below=False)
