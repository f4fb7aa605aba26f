"""GET /metrics: Prometheus exposition through prometheus-client (one registry per app).

Counters that already live elsewhere (refusals, accepted notifications) are read at scrape time
by a collector rather than counted twice; message states come from the store, so they are the
same across replicas sharing one database.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from server.appkeys import STORE
from server.ops.client_cutoffs import ClientCutoffs
from storage.errors import StorageError
from storage.models import MessageStatus

OUTBOX_STATUSES = (MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.SENDING)

AcceptedCounts = Callable[[], Mapping[tuple[str, str, str], int]]  # (app, kind, result) -> n
RefusedCounts = Callable[[], Mapping[tuple[str, str], int]]  # (app, reason) -> n
# Read from the store just before a scrape (e.g. the delivery backlogs); may raise StorageError.
ScrapeRefresh = Callable[[], Awaitable[None]]


def _none() -> dict[Any, int]:
    return {}


class Metrics:
    """Everything /metrics shows, registered on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.error_answers = Counter(
            "subgate_error_answers",
            "Error answers (API and notification routes) by code.",
            ["code"],
            registry=self.registry,
        )
        self.store_commit_seconds = Histogram(
            "subgate_store_commit_seconds",
            "Time to commit one group of writes.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.snapshot = _Snapshot()
        self.registry.register(self.snapshot)
        self.clients = ClientCutoffs()
        self.registry.register(self.clients)
        self.accepted_counts: AcceptedCounts = _none
        self.refused_counts: RefusedCounts = _none
        self.refreshes: list[ScrapeRefresh] = []

    def count_notifications(self, accepted: AcceptedCounts, refused: RefusedCounts) -> None:
        """Where the notification counters live: they are read at scrape time, not copied."""
        self.accepted_counts, self.refused_counts = accepted, refused

    def observe_commit(self, seconds: float, jobs: int) -> None:
        self.store_commit_seconds.observe(seconds)


class _Snapshot(Collector):
    """Values gathered (asynchronously) just before each scrape."""

    def __init__(self) -> None:
        self.accepted: dict[tuple[str, str, str], int] = {}
        self.refused: dict[tuple[str, str], int] = {}
        self.messages: dict[tuple[str, str], int] = {}
        self.store_read_seconds: float | None = None

    def collect(self) -> Iterator[Any]:
        accepted = CounterMetricFamily(
            "subgate_notifications_accepted",
            "Verified and stored notifications.",
            labels=["app", "kind", "result"],
        )
        for (app, kind, result), n in sorted(self.accepted.items()):
            accepted.add_metric([app, kind, result], n)
        refused = CounterMetricFamily(
            "subgate_notifications_refused",
            "Refused notifications by reason.",
            labels=["app", "reason"],
        )
        for (app, reason), n in sorted(self.refused.items()):
            refused.add_metric([app, reason], n)
        messages = GaugeMetricFamily(
            "subgate_messages",
            "Messages in the outbox by channel and status.",
            labels=["channel", "status"],
        )
        for (channel, status), n in sorted(self.messages.items()):
            messages.add_metric([channel, status], n)
        depth = GaugeMetricFamily("subgate_outbox_depth", "Messages not yet settled.")
        depth.add_metric([], sum(n for (_, s), n in self.messages.items() if s in OUTBOX_STATUSES))
        yield from (accepted, refused, messages, depth)
        if self.store_read_seconds is not None:
            read = GaugeMetricFamily(
                "subgate_store_read_seconds",
                "Time the store took to answer a read at this scrape (any backend).",
            )
            read.add_metric([], self.store_read_seconds)
            yield read


METRICS = web.AppKey("metrics", Metrics)


async def serve_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.snapshot.accepted = dict(metrics.accepted_counts())
    metrics.snapshot.refused = dict(metrics.refused_counts())
    try:
        started = time.perf_counter()
        await request.app[STORE].ping()
        metrics.snapshot.store_read_seconds = time.perf_counter() - started
        metrics.snapshot.messages = await request.app[STORE].message_counts()
    except StorageError:
        metrics.snapshot.store_read_seconds = None
        metrics.error_answers.labels(code="storage_unavailable").inc()
    for refresh in metrics.refreshes:
        with contextlib.suppress(StorageError):  # its last values are shown again
            await refresh()
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
