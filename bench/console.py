"""The operator console on a large store: every page's latency at 4 concurrent users.

The store (``bench.console_fill``): a 1 M-user ledger, a million notifications and the
ledger's messages with their attempts. Subgate runs as a real process on it (production
settings, ``bench.service``); each of 4 users logs in as a browser does (the login form's
one-time value and its cookie, then the session cookie) and loads one page after another, as
fast as answers come, for ``seconds`` per page. Each request asks for another row where the page
has one (a random notification, message, user or deep cursor). Every answer must be 200 and
say what it should. Then the lookup ceiling (``bench.lookup_ceiling``, no store at all) is
loaded the same way by the same client, so each page's p99 reads against what this machine and
client allow.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bench.console_fill import (
    DESTINATION,
    ConsoleStore,
    cached_console_store,
    destination_config,
    sample_ids,
    with_destination,
)
from bench.intake import APP_ID, ROOT, Workspace
from bench.ledger_fill import user_id
from bench.lookup import read_through
from bench.processes import cpu_seconds, free_port, serving
from bench.quiet import Foreign, least_disturbed
from bench.report import latency_summary, verdict
from bench.service import ONE_TIME, command, new_token, write_config, write_keys

P99_TARGET_MS = 100.0
USERS = 4
_LOGIN_VALUE = re.compile(r'name="login_csrf" value="([^"]+)"')
_APP = f"/console/apps/{APP_ID}"
_DESTINATION = f"/console/deliveries/{DESTINATION}"


@dataclass(frozen=True)
class ConsolePlan:
    users: int
    notifications: int
    seconds: float  # per page
    samples: int = 2000


@dataclass(frozen=True)
class Page:
    """A page of the contract: the URL of each request, and text its answer must hold."""

    name: str
    url: Callable[[random.Random], str]
    expect: str


def pages(ids: dict[str, list[Any]]) -> list[Page]:
    def pick(name: str) -> Callable[[random.Random], Any]:
        return lambda rng: rng.choice(ids[name])

    names = ("notify_ids", "messages", "users", "cursors", "failing_cursors")
    notify, message, user, cursor, failing = map(pick, names)
    since = ids["yesterday"][0]
    return [
        Page("overview", lambda rng: "/console", "Notifications per hour"),
        Page("notifications", lambda rng: f"{_APP}/notifications", "Older"),
        Page(
            "notifications_kind_since",
            lambda rng: f"{_APP}/notifications?kind=trade_status_sync&since={since}",
            "trade_status_sync",
        ),
        Page(
            "notifications_text",
            lambda rng: f"{_APP}/notifications?q={notify(rng)[-9:]}",
            "Notifications",
        ),
        Page(
            "notifications_later_page",
            lambda rng: f"{_APP}/notifications?before={quote(cursor(rng))}",
            "Older",
        ),
        Page(
            "notification",
            lambda rng: f"{_APP}/notifications/{notify(rng)}",
            "Consent events it caused",
        ),
        Page("user", lambda rng: f"{_APP}/users/{user_id(user(rng))}", ONE_TIME),
        Page("messages", lambda rng: f"{_APP}/messages", "Older"),
        Page("messages_unknown", lambda rng: f"{_APP}/messages?status=unknown", "unknown"),
        Page(
            "messages_failed_channel",
            lambda rng: f"{_APP}/messages?status=failed&channel=mini_template",
            "failed",
        ),
        Page("message", lambda rng: f"{_APP}/messages/{message(rng)}", "Attempts"),
        Page("deliveries", lambda rng: "/console/deliveries", DESTINATION),
        Page("destination_failing", lambda rng: _DESTINATION, "Older"),
        Page("destination_dead", lambda rng: f"{_DESTINATION}?status=dead", "Older"),
        Page("destination_later", lambda rng: f"{_DESTINATION}?before={failing(rng)}", "Attempts"),
    ]


def run(plan: ConsolePlan, workdir: Path) -> dict[str, Any]:
    space = Workspace.create(workdir / "keys")
    store = cached_console_store(plan.users, plan.notifications, space.alipay_key)
    print(f"  store: {store.meta['messages']:,} messages; ", end="", flush=True)
    backlog = with_destination(store)  # before the read-through: it may write
    print(f"{DESTINATION}: {backlog}; ", end="", flush=True)
    print(f"read into the page cache in {read_through(store.path):.1f} s", flush=True)
    ids = sample_ids(store, plan.samples)
    keys, token = write_keys(workdir), new_token()
    config = write_config(workdir / "subgate.toml", store.path, keys, token)
    config.write_text(config.read_text() + destination_config(free_port()))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    with serving(command(config, port), port, ROOT, workdir / "server.log") as server:
        asyncio.run(_warm(base, token, pages(ids)))
        for page in pages(ids):
            results[page.name] = entry = least_disturbed(
                lambda page=page: _measure(base, token, page, plan.seconds, server.pid)  # type: ignore[misc]
            )
            print(
                f"  {page.name:26} {entry['rps']:>6.0f} req/s  p50 {entry['p50_ms']:7.2f} ms  "
                f"p99 {entry['p99_ms']:7.2f} ms  max {entry['max_ms']:7.1f} ms",
                flush=True,
            )
    ceiling = _ceiling(token, plan, workdir)
    print(
        f"  lookup ceiling             {ceiling['rps']:>6.0f} req/s  p50 {ceiling['p50_ms']:7.2f} "
        f"ms  p99 {ceiling['p99_ms']:7.2f} ms",
        flush=True,
    )
    return {
        "store": {**store.meta, "path": store.path.name, "deliveries": backlog},
        "concurrent_users": USERS,
        "seconds_per_page": plan.seconds,
        "pages": results,
        "lookup_ceiling": ceiling,
        "targets": {
            f"{name}_p99_under_{P99_TARGET_MS:.0f}ms": verdict(
                entry["p99_ms"], P99_TARGET_MS, below=True
            )
            for name, entry in results.items()
        },
    }


async def log_in(session: aiohttp.ClientSession, base: str, token: str) -> None:
    """As a browser: the form's one-time value (and its cookie), then the session cookie."""
    async with session.get(f"{base}/console") as answer:
        found = _LOGIN_VALUE.search(await answer.text())
    if found is None:
        raise AssertionError("the console did not show its login form")
    form = {"token": token, "login_csrf": found.group(1), "next": "/console"}
    async with session.post(f"{base}/console/login", data=form, allow_redirects=False) as answer:
        if answer.status != 303:
            raise AssertionError(f"login answered {answer.status}")


def _session() -> aiohttp.ClientSession:
    # An IP address host: the cookie jar must accept its cookies (unsafe=True).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _warm(base: str, token: str, every: list[Page]) -> None:
    """Each page a few times, and every answer checked."""
    async with _session() as session:
        await log_in(session, base, token)
        rng = random.Random(1)
        for page in every:
            for _ in range(3):
                await _get(session, base, page, rng)


async def _get(session: aiohttp.ClientSession, base: str, page: Page, rng: random.Random) -> None:
    url = page.url(rng)
    async with session.get(f"{base}{url}", allow_redirects=False) as answer:
        body = await answer.text()
    if answer.status != 200 or page.expect not in body:
        raise AssertionError(f"{url} answered {answer.status} without {page.expect!r}")


def _measure(base: str, token: str, page: Page, seconds: float, server: int) -> dict[str, Any]:
    watch = Foreign(server)
    before = cpu_seconds(server)
    latencies, elapsed = asyncio.run(_load(base, token, page, seconds))
    cpu = cpu_seconds(server) - before
    return {
        **latency_summary(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "server_cpu_ms_per_request": round(cpu / max(len(latencies), 1) * 1000, 2),
        **watch.stop(),
    }


async def _load(base: str, token: str, page: Page, seconds: float) -> tuple[list[float], float]:
    """``USERS`` logged-in users, each loading the page one request after another."""
    sessions = [_session() for _ in range(USERS)]
    try:
        for session in sessions:
            await log_in(session, base, token)
        latencies: list[float] = []
        started = time.perf_counter()
        end = started + seconds

        async def user(number: int, session: aiohttp.ClientSession) -> None:
            rng = random.Random(number)
            while time.perf_counter() < end:
                at = time.perf_counter()
                await _get(session, base, page, rng)
                latencies.append(time.perf_counter() - at)

        await asyncio.gather(*(user(n, s) for n, s in enumerate(sessions)))
        return latencies, time.perf_counter() - started
    finally:
        for session in sessions:
            await session.close()


def _ceiling(token: str, plan: ConsolePlan, workdir: Path) -> dict[str, Any]:
    """The lookup ceiling, asked by the same client at the same concurrency."""
    answer = workdir / "ceiling-answer.json"
    answer.write_text('{"can_send": true, "credits": 1, "status": "subscribed"}')
    port = free_port()
    ceiling_cmd = [sys.executable, "-m", "bench.lookup_ceiling", str(port), token, str(answer)]
    path = f"/v1/apps/{APP_ID}/users/{user_id(1)}/subscriptions/{ONE_TIME}"
    with serving(ceiling_cmd, port, ROOT, workdir / "ceiling.log") as server:
        return least_disturbed(
            lambda: _measure_ceiling(f"http://127.0.0.1:{port}{path}", token, plan, server.pid)
        )


def _measure_ceiling(url: str, token: str, plan: ConsolePlan, server: int) -> dict[str, Any]:
    watch = Foreign(server)

    async def load() -> tuple[list[float], float]:
        headers = {"Authorization": f"Bearer {token}"}
        latencies: list[float] = []
        async with aiohttp.ClientSession(headers=headers) as session:
            started = time.perf_counter()
            end = started + plan.seconds

            async def user() -> None:
                while time.perf_counter() < end:
                    at = time.perf_counter()
                    async with session.get(url) as answer:
                        await answer.read()
                    latencies.append(time.perf_counter() - at)

            await asyncio.gather(*(user() for _ in range(USERS)))
            return latencies, time.perf_counter() - started

    latencies, elapsed = asyncio.run(load())
    return {**latency_summary(latencies), "rps": round(len(latencies) / elapsed, 1), **watch.stop()}


def print_summary(report: dict[str, Any]) -> None:
    store = report["store"]
    print(
        f"  store: {store['users']:,} users, {store['notifications']:,} notifications, "
        f"{store['messages']:,} messages; {report['concurrent_users']} concurrent users"
    )
    for name, entry in report["pages"].items():
        print(
            f"  {name:26} {entry['rps']:>6.0f} req/s  p50 {entry['p50_ms']:7.2f} ms  "
            f"p99 {entry['p99_ms']:7.2f} ms"
        )
    ceiling = report["lookup_ceiling"]
    print(
        f"  lookup ceiling             {ceiling['rps']:>6.0f} req/s  p50 {ceiling['p50_ms']:7.2f} "
        f"ms  p99 {ceiling['p99_ms']:7.2f} ms"
    )
    for name, outcome in report["targets"].items():
        print(f"  target {name}: {outcome}")


def run_benchmark(quick: bool, seconds: float, workdir: Path) -> dict[str, Any]:
    size = 100_000 if quick else 1_000_000
    plan = ConsolePlan(
        users=size, notifications=size, seconds=min(seconds, 2.0) if quick else seconds
    )
    return run(plan, workdir)


__all__ = ["ConsoleStore", "print_summary", "run_benchmark"]
