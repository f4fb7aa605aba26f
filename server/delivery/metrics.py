"""What ``/metrics`` shows of the pushes: deliveries by destination and result, attempt latency,
and each destination's backlog and oldest undelivered age.

Results and latencies are counted here, by this process, as its attempts finish. The backlog is
the store's (``destination_backlogs``), read just before each scrape, so every replica on one
database shows the same numbers. Labels carry the destination's name only: never its URL (it may
hold credentials) nor anything of a secret.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.runtime.clock import Clock
from storage import Store
from storage.models import DeliveryResult, DestinationBacklog

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DeliveryMetrics:
    """The push's counters, histogram and backlog gauges, on the app's one registry."""

    def __init__(self, registry: CollectorRegistry, destinations: Sequence[str]) -> None:
        self.results = Counter(
            "subgate_deliveries",
            "Delivery attempts by destination and what they decided (delivered, retry, dead).",
            ["destination", "result"],
            registry=registry,
        )
        self.leases_lost = Counter(
            "subgate_delivery_leases_lost",
            "Attempts finished after their lease ran out: kept, their verdict not applied.",
            ["destination"],
            registry=registry,
        )
        self.latency = Histogram(
            "subgate_delivery_attempt_seconds",
            "Time from sending a push to the end of its answer (or its failure).",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.backlogs = BacklogGauges(destinations)
        registry.register(self.backlogs)

    def observe(self, destination: str, results: Iterable[DeliveryResult], applied: int) -> None:
        """Count one finished batch: each attempt's verdict and latency, and leases lost.

        A batch's verdicts are counted together and its labels looked up once: this runs on the
        event loop for every push."""
        latency = self.latency.labels(destination)
        verdicts: collections.Counter[str] = collections.Counter()
        for result in results:
            verdicts[result.verdict.value] += 1
            latency.observe(result.attempt.latency_ms / 1000)
        for verdict, times in verdicts.items():
            self.results.labels(destination, verdict).inc(times)
        count = verdicts.total()
        if count > applied:
            self.leases_lost.labels(destination).inc(count - applied)

    async def refresh(self, store: Store, clock: Clock) -> None:
        """Read every destination's backlog from the store (before a scrape)."""
        self.backlogs.update(await store.destination_backlogs(), clock().timestamp())


class BacklogGauges(Collector):
    """The backlog read at the last scrape; a configured destination with none shows zeros."""

    def __init__(self, destinations: Sequence[str]) -> None:
        self._configured = tuple(destinations)
        self._backlogs: dict[str, DestinationBacklog] = {}
        self._now = 0.0

    def update(self, backlogs: Iterable[DestinationBacklog], now: float) -> None:
        self._backlogs = {backlog.destination: backlog for backlog in backlogs}
        self._now = now

    def collect(self) -> Iterator[Any]:
        counts = GaugeMetricFamily(
            "subgate_delivery_backlog",
            "Deliveries by destination and state: pending (failing among them) and dead.",
            labels=["destination", "state"],
        )
        oldest = GaugeMetricFamily(
            "subgate_delivery_oldest_pending_seconds",
            "Age of the oldest undelivered event per destination (0 when none waits).",
            labels=["destination"],
        )
        names = sorted(set(self._configured) | set(self._backlogs))
        for name in names:
            backlog = self._backlogs.get(name, DestinationBacklog(destination=name))
            for state in ("pending", "failing", "dead"):
                counts.add_metric([name, state], getattr(backlog, state))
            since = backlog.oldest_pending_at
            age = 0.0 if since is None else max(0.0, self._now - since.timestamp())
            oldest.add_metric([name], age)
        yield from (counts, oldest)
