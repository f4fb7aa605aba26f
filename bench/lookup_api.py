"""Lookups through ``ConsentLedger`` in the bench's own process, and the bulk lookups both the
HTTP and the Python measurements of ``bench/lookup.py`` ask (the same users for a seed)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.intake import APP_ID
from bench.ledger_fill import Ledger, user_id
from bench.quiet import Foreign
from bench.report import latency_summary
from bench.service import TEMPLATES
from server.consent.ledger import ConsentLedger
from server.consent.templates import TemplateRegistry
from server.consent.views import LookupRequest
from server.settings import load_settings
from server.wiring.app import open_configured_store

BULK_USERS = 1000


def bulk_bodies(ledger: Ledger, count: int, seed: int) -> list[tuple[str, list[int]]]:
    rng = random.Random(seed)
    templates = [t for t, _, _ in TEMPLATES]
    return [
        (rng.choice(templates), rng.sample(range(ledger.users), BULK_USERS)) for _ in range(count)
    ]


async def python_api(
    config: Path, ledger: Ledger, api_calls: int, bulk_requests: int
) -> dict[str, Any]:
    """``ConsentLedger`` in this process, on a store opened exactly as ``serve`` opens it."""
    watch = Foreign()
    settings = load_settings(config)
    store = await open_configured_store(settings.storage)
    api = ConsentLedger(store, TemplateRegistry(settings.apps), lambda: datetime.now(UTC))
    rng = random.Random(5)
    templates = [t for t, _, _ in TEMPLATES]
    warmup = 200
    singles = [
        (user_id(rng.randrange(ledger.users)), rng.choice(templates))
        for _ in range(warmup + api_calls)
    ]
    bulks = [
        LookupRequest(template_id=template, user_ids=[user_id(u) for u in users])
        for template, users in bulk_bodies(ledger, bulk_requests + 5, seed=13)
    ]
    single_times: list[float] = []
    bulk_times: list[float] = []
    try:
        for user, template in singles:
            started = time.perf_counter()
            await api.subscription(APP_ID, user, template)
            single_times.append(time.perf_counter() - started)
        for request in bulks:
            started = time.perf_counter()
            answer = await api.lookup(APP_ID, request)
            bulk_times.append(time.perf_counter() - started)
            if len(answer.results) != BULK_USERS:
                raise AssertionError("a bulk lookup through ConsentLedger lost users")
    finally:
        await store.close()
    return {
        "single": latency_summary(single_times[warmup:]),
        "bulk": latency_summary(bulk_times[5:]),
        **watch.stop(),
    }
