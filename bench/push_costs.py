"""Why pushes reach the share of the bare client's rate they do: a CPU budget per push.

Subgate's pushes and the bare client's posts go to the same receiver on the same machine. Where
every process is busy and the cores are all used, rates stand in the inverse ratio of the CPU a
push costs over all the processes (Subgate's service and push worker, or the bare client, and
the receiver in each case): that predicts the ratio on a machine with few cores. With a core for
each process, the slowest process alone would bound each rate instead. The line gives both
predictions beside the measured ratio, from the CPU the round measured per push.
"""

from __future__ import annotations

from typing import Any


def push_budget(push: dict[str, Any]) -> dict[str, float]:
    """The CPU per push (µs) of each process of one round, and what each budget predicts."""
    service = push["loop_cpu_us_per_delivery"] + push["other_threads_cpu_us_per_delivery"]
    worker = push["workers_cpu_us_per_delivery"]
    receiver = push["receiver_cpu_us_per_delivery"]
    client, bare_receiver = (
        push["ceiling_client_cpu_us_per_delivery"],
        push["ceiling_receiver_cpu_us_per_delivery"],
    )
    subgate_total = service + worker + receiver
    bare_total = client + bare_receiver
    return {
        "subgate_total_us": round(subgate_total, 1),
        "bare_total_us": round(bare_total, 1),
        "predicted_all_cores_busy": round(bare_total / subgate_total, 3),
        "predicted_core_per_process": round(
            max(client, bare_receiver) / max(service, worker, receiver), 3
        ),
        "measured": round(push["subgate_per_second"] / push["ceiling_per_second"], 3),
        # CPU a push times pushes a second: the cores each side kept busy. Where Subgate's falls
        # short of the machine's while the bare client's does not, the measured ratio falls
        # short of the first prediction by the time no process ran.
        "subgate_cores_used": round(subgate_total * push["subgate_per_second"] / 1e6, 2),
        "bare_cores_used": round(bare_total * push["ceiling_per_second"] / 1e6, 2),
    }


def why_pushes(push: dict[str, Any]) -> str:
    """One line: the CPU each side spends per push, the two ratios it predicts, and the cores
    each side kept busy."""
    budget = push_budget(push)
    return (
        f"why: CPU a push, Subgate {budget['subgate_total_us']:.0f} µs (service loop "
        f"{push['loop_cpu_us_per_delivery']:.0f}, its other threads "
        f"{push['other_threads_cpu_us_per_delivery']:.0f}, push worker "
        f"{push['workers_cpu_us_per_delivery']:.0f}, receiver "
        f"{push['receiver_cpu_us_per_delivery']:.0f}) against the bare client's "
        f"{budget['bare_total_us']:.0f} (client {push['ceiling_client_cpu_us_per_delivery']:.0f}, "
        f"receiver {push['ceiling_receiver_cpu_us_per_delivery']:.0f}): every core busy predicts "
        f"{budget['predicted_all_cores_busy']:.2f}, a core per process "
        f"{budget['predicted_core_per_process']:.2f}; measured {budget['measured']:.2f}, "
        f"with {budget['subgate_cores_used']:.2f} cores in use against the bare client's "
        f"{budget['bare_cores_used']:.2f}"
    )
