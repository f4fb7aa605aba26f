"""Event delivery: intake with a destination against intake without, pushes against a bare
client, and commit-to-delivery latency below capacity.

Three measures, each a ratio or a latency taken in one run on one machine (bench/README.md):

- **intake**: the intake load (wrk, distinct signed notifications, 64 connections) on Subgate with
  no destination and with one destination taking every event, in alternating rounds, each on a
  fresh database; target with >= 0.9 x without.
- **throughput**: ``events`` notifications stored before Subgate starts, for a destination whose
  cursor is at the start (as if it had been configured all along); Subgate pushes them to a local
  receiver (``bench.receiver``). The ceiling posts the same payloads, fetched from Subgate's feed,
  signed the same way, at the same concurrency, with a bare aiohttp client
  (``bench.delivery_ceiling``). Both rates are timed by the receiver, first to last arrival;
  target Subgate >= 0.8 x the ceiling. Subgate runs with ``[delivery] processes`` =
  ``DeliveryPlan.push_processes`` (``SUBGATE_DELIVERY__PROCESSES`` overrides it); the CPU per
  push of its event loop, its other threads, its push workers and the receiver is recorded,
  and the bare client's and its receiver's beside them.
- **latency**: notifications posted at half of the smaller of two capacities just measured
  (``bench.paced``, open loop): the push rate, and the rate the intake rounds with a destination
  delivered end to end (every event the receiver got, from its first arrival to its last, backlog
  drained included): intake and pushes share the cores, so the intake rate alone overstates what
  the whole path sustains. The receiver takes each event's time from its payload timestamp
  (written when the notification was received, before its commit) to its arrival.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.intake import APP_ID, ROOT, Workspace, serve_command, signed_bodies
from bench.load import run_wrk
from bench.notifications_fill import record
from bench.processes import cpu_seconds, descendants, free_port, serving, thread_usage
from bench.push_costs import why_pushes
from bench.report import latency_summary, verdict
from bench.service import new_token
from storage import open_store

SECRET = "whsec_" + "YmVuY2htYXJrLWRlbGl2ZXJ5LXNlY3JldC0zMmJ5dGVz"  # fixed: nothing to protect
DESTINATION = "bench"


@dataclass(frozen=True)
class DeliveryPlan:
    seconds: float
    runs: int
    events: int
    concurrency: int = 8
    connections: int = 64
    bodies: int = 150_000
    push_processes: int = 1  # [delivery] processes (SUBGATE_DELIVERY__PROCESSES overrides it)


@dataclass(frozen=True)
class Stand:
    """One round's processes: where the receiver listens and how Subgate is started."""

    run_dir: Path
    receiver_port: int
    port: int
    token: str


def write_config(stand: Stand, space: Workspace, plan: DeliveryPlan, destination: bool) -> Path:
    """Subgate as the intake benchmark runs it, with a read token, and the destination if any."""
    lines = [
        "[server]\nnotify_max_age_seconds = 2592000",
        f'[storage]\nurl = "sqlite:///{stand.run_dir}/subgate.db"\nsynchronous = "FULL"',
        f'[[apps]]\napp_id = "{APP_ID}"',
        f'alipay_public_key = "{space.root / "alipay_public.pem"}"',
        f'[[tokens]]\ntoken = "{stand.token}"\napps = ["{APP_ID}"]\nscopes = ["read", "write"]',
    ]
    if destination:
        url = f"http://127.0.0.1:{stand.receiver_port}/hook"
        lines.append(
            f'[[destinations]]\nname = "{DESTINATION}"\nurl = "{url}"\nsecret = "{SECRET}"\n'
            f"concurrency = {plan.concurrency}"
        )
        lines.append(f"[delivery]\nprocesses = {plan.push_processes}")
    config = stand.run_dir / "subgate.toml"
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    return config


def new_stand(workdir: Path, name: str) -> Stand:
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return Stand(run_dir, free_port(), free_port(), new_token())


def receiver(stand: Stand) -> Any:
    command = [sys.executable, "-m", "bench.receiver", str(stand.receiver_port)]
    return serving(command, stand.receiver_port, ROOT, stand.run_dir / "receiver.log")


def receiver_stats(stand: Stand, what: str = "stats") -> dict[str, Any]:
    url = f"http://127.0.0.1:{stand.receiver_port}/{what}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


def wait_for_events(stand: Stand, count: int, deadline_seconds: float) -> dict[str, Any]:
    """The receiver's stats once ``count`` events arrived (or the deadline passed). Only the
    count is polled meanwhile: the whole stats, latencies included, are read once at the end."""
    deadline = time.monotonic() + deadline_seconds
    while receiver_stats(stand, "count")["events"] < count and time.monotonic() <= deadline:
        time.sleep(0.05)
    return receiver_stats(stand)


def arrival_rate(stats: dict[str, Any]) -> float:
    if stats["events"] < 2 or stats["last_at"] <= stats["first_at"]:
        return 0.0
    seconds = float(stats["last_at"]) - float(stats["first_at"])
    return round((int(stats["events"]) - 1) / seconds, 1)


def intake_round(
    space: Workspace, plan: DeliveryPlan, bodies: Path, destination: bool, index: int
) -> dict[str, Any]:
    stand = new_stand(space.root, f"intake-{'one' if destination else 'none'}-{index}")
    config = write_config(stand, space, plan, destination)
    url = f"http://127.0.0.1:{stand.port}/alipay/notify"
    with (
        receiver(stand),
        serving(serve_command(config, stand.port), stand.port, ROOT, stand.run_dir / "server.log"),
    ):
        run_wrk(url, bodies, plan.connections, 2, offset=plan.bodies // 2)
        result = run_wrk(url, bodies, plan.connections, plan.seconds, offset=0)
        delivered = wait_for_events(stand, result.requests, 60) if destination else None
    return {
        **result.as_dict(),
        "delivered": None if delivered is None else delivered["events"],
        "end_to_end_per_second": None if delivered is None else arrival_rate(delivered),
    }


def intake_rounds(space: Workspace, plan: DeliveryPlan, bodies: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "one": []}
    for index in range(plan.runs):
        for name, destination in (("none", False), ("one", True)):
            result = intake_round(space, plan, bodies, destination, index)
            runs[name].append(result)
            print(
                f"  intake, {name} destination #{index + 1}: {result['rps']:.0f} req/s", flush=True
            )
    pairs = [one["rps"] / none["rps"] for none, one in zip(runs["none"], runs["one"], strict=True)]
    return {
        "runs": runs,
        "ratio_median": round(statistics.median(pairs), 3),
        "ratio_range": [round(min(pairs), 3), round(max(pairs), 3)],
        "with_destination_rps": statistics.median(r["rps"] for r in runs["one"]),
        "end_to_end_per_second": statistics.median(r["end_to_end_per_second"] for r in runs["one"]),
    }


def fill(database: Path, count: int) -> None:
    """``count`` stored notifications, and the destination's cursor at the log's start."""
    asyncio.run(_fill(f"sqlite:///{database.resolve()}", count))
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO destination_cursors VALUES (?, 0, 0)", (DESTINATION,))


async def _fill(url: str, count: int) -> None:
    store = await open_store(url, synchronous="OFF")
    start = datetime.now(UTC) - timedelta(days=1)
    try:
        for first in range(0, count, 2_000):
            records = (record(i, count, start, "key:bench") for i in range(first, count)[:2_000])
            await asyncio.gather(*(store.record_notification(r) for r in records))
    finally:
        await store.close()


def fetch_feed(stand: Stand, count: int) -> list[dict[str, str]]:
    """Every event's id and body, as the feed gives them (the ceiling posts these)."""
    found: list[dict[str, str]] = []
    cursor = ""
    while len(found) < count:
        url = f"http://127.0.0.1:{stand.port}/v1/apps/{APP_ID}/events?limit=500{cursor}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {stand.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            page = json.loads(answer.read())
        if not page["events"]:
            break
        for event in page["events"]:
            payload = {k: event[k] for k in ("type", "timestamp", "data")}
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            found.append({"id": event["id"], "body": body})
        cursor = f"&after={page['next_cursor']}"
    return found


def throughput_round(space: Workspace, plan: DeliveryPlan, index: int) -> dict[str, Any]:
    stand = new_stand(space.root, f"push-{index}")
    fill(stand.run_dir / "subgate.db", plan.events)
    config = write_config(stand, space, plan, destination=True)
    with (
        receiver(stand) as taker,
        serving(
            serve_command(config, stand.port), stand.port, ROOT, stand.run_dir / "server.log"
        ) as server,
    ):
        before, workers, took = thread_usage(server.pid), workers_cpu(server.pid), cpu(taker.pid)
        pushed = wait_for_events(stand, plan.events, 600)
        usage = (thread_usage(server.pid) - before).per_request(plan.events)
        usage["workers_cpu_us_per_request"] = per_event(workers_cpu(server.pid) - workers, plan)
        usage["receiver_cpu_us_per_request"] = per_event(cpu(taker.pid) - took, plan)
        payloads = fetch_feed(stand, plan.events)
    path = stand.run_dir / "payloads.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in payloads))
    url = f"http://127.0.0.1:{stand.receiver_port}/hook"
    with receiver(stand) as taker:
        command = [sys.executable, "-m", "bench.delivery_ceiling", url, str(path)]
        took, spent = cpu(taker.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*command, str(plan.concurrency), SECRET], check=True, cwd=ROOT)
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = done.ru_utime + done.ru_stime - spent.ru_utime - spent.ru_stime
        ceiling = receiver_stats(stand)
        ceiling_receiver = per_event(cpu(taker.pid) - took, plan)
    result = {
        "events": plan.events,
        "subgate_delivered": pushed["events"],
        "subgate_repeats": pushed["repeats"],
        "subgate_per_second": arrival_rate(pushed),
        "ceiling_delivered": ceiling["events"],
        "ceiling_per_second": arrival_rate(ceiling),
        **{name.replace("request", "delivery"): value for name, value in usage.items()},
        "ceiling_client_cpu_us_per_delivery": per_event(client, plan),
        "ceiling_receiver_cpu_us_per_delivery": ceiling_receiver,
    }
    print(
        f"  push #{index + 1}: Subgate {result['subgate_per_second']:.0f}/s, "
        f"bare client {result['ceiling_per_second']:.0f}/s",
        flush=True,
    )
    return result


def cpu(pid: int) -> float:
    return cpu_seconds(pid)


def workers_cpu(pid: int) -> float:
    """CPU seconds of Subgate's worker processes alive now (its push workers)."""
    return sum(cpu_seconds(child) for child in descendants(pid))


def per_event(seconds: float, plan: DeliveryPlan) -> float:
    return round(seconds / max(plan.events, 1) * 1e6, 1)


def latency_round(
    space: Workspace, plan: DeliveryPlan, bodies: Path, rate: float
) -> dict[str, Any]:
    stand = new_stand(space.root, "latency")
    config = write_config(stand, space, plan, destination=True)
    url = f"http://127.0.0.1:{stand.port}/alipay/notify"
    with (
        receiver(stand),
        serving(serve_command(config, stand.port), stand.port, ROOT, stand.run_dir / "server.log"),
    ):
        command = [sys.executable, "-m", "bench.paced", url, str(bodies), f"{rate:.1f}"]
        done = subprocess.run(
            [*command, str(plan.seconds), "0"], check=True, cwd=ROOT, capture_output=True
        )
        answered = json.loads(done.stdout)["success"]
        stats = wait_for_events(stand, answered, 60)
    latencies = latency_summary([ms / 1000 for ms in stats["latencies_ms"]])
    return {"rate": round(rate, 1), "answered": answered, "delivered": stats["events"], **latencies}


def run(plan: DeliveryPlan, workdir: Path) -> dict[str, Any]:
    space = Workspace.create(workdir)
    bodies = signed_bodies(space, plan.bodies)
    intake = intake_rounds(space, plan, bodies)
    pushes = [throughput_round(space, plan, index) for index in range(plan.runs)]
    ratios = [p["subgate_per_second"] / p["ceiling_per_second"] for p in pushes]
    capacity = latency_capacity(intake, pushes)
    latency = {**latency_round(space, plan, bodies, capacity / 2), "capacity": capacity}
    return {
        "plan": plan.__dict__,
        "intake": intake,
        "pushes": pushes,
        "push_ratio_median": round(statistics.median(ratios), 3),
        "push_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "latency": latency,
        "targets": [*targets(intake, pushes, ratios, latency), why_pushes(median_round(pushes))],
    }


def latency_capacity(intake: dict[str, Any], pushes: list[dict[str, Any]]) -> float:
    """What the whole path sustains, which the latency round runs at half of: the smaller of
    the median push rate and the rate the intake rounds with a destination delivered end to end
    (intake's own rate where no end-to-end rate was measured: too few events)."""
    end_to_end = intake["end_to_end_per_second"] or intake["with_destination_rps"]
    return float(min(end_to_end, statistics.median(p["subgate_per_second"] for p in pushes)))


def median_round(pushes: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose push ratio is the median one (the lower middle of an even count)."""
    ranked = sorted(pushes, key=lambda p: p["subgate_per_second"] / p["ceiling_per_second"])
    return ranked[(len(ranked) - 1) // 2]


def targets(
    intake: dict[str, Any],
    pushes: list[dict[str, Any]],
    ratios: list[float],
    latency: dict[str, Any],
) -> list[str]:
    lost = sum(r["rps"] > 0 and r["delivered"] < r["requests"] for r in intake["runs"]["one"])
    lost += sum(p["subgate_delivered"] < p["events"] for p in pushes)
    lost += latency["delivered"] < latency["answered"]
    return [
        verdict(intake["ratio_median"], 0.9, below=False)
        + f" ({intake['ratio_median']}) intake with one destination / with none (>= 0.9)",
        verdict(statistics.median(ratios), 0.8, below=False)
        + f" ({statistics.median(ratios):.3f}) pushes / a bare aiohttp client posting the same"
        " payloads at the same concurrency (>= 0.8)",
        ("met" if lost == 0 else "FAILED")
        + f" every acknowledged event delivered ({lost} runs short)",
        f"info: commit-to-delivery at {latency['rate']}/s (half of {latency['capacity']:.0f}/s,"
        f" the smaller of the push rate and the rate delivered end to end while intake was"
        f" saturated): p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms",
    ]


def print_summary(body: dict[str, Any]) -> None:
    for line in body["targets"]:
        print(f"  {line}")


def run_benchmark(quick: bool, seconds: float, workdir: Path, runs: int) -> dict[str, Any]:
    """``python -m bench --only delivery``: the plan for a full run, or a small quick one."""
    plan = DeliveryPlan(
        seconds=seconds,
        runs=1 if quick else runs,
        events=5_000 if quick else 50_000,
        bodies=60_000 if quick else 150_000,
    )
    return run(plan, workdir)
