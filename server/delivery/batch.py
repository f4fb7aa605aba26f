"""One claimed batch of a destination: each event signed and posted (as many at once as the
destination's ``concurrency``), each answer turned into a verdict, all kept in one commit.

A post is started only while its whole timeout still fits in the batch's lease: a post can then
never be in flight after the lease ends, when another replica may claim the same delivery. A
delivery left unposted keeps its lease until it runs out and is claimed again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.delivery.ahead import Ahead, Prepared, Waiting
from server.delivery.backoff import Backoff, Draw
from server.delivery.metrics import DeliveryMetrics
from server.delivery.pool import DestinationPool
from server.delivery.posting import Answer, Request, send_request
from server.delivery.signing import webhook_headers
from server.events.payloads import EventPayloads, event_id
from server.runtime.clock import Clock
from server.settings import DestinationSettings
from storage import Store
from storage.models import (
    ClaimedDelivery,
    Delivery,
    DeliveryAttempt,
    DeliveryResult,
    DeliveryVerdict,
    StoredEvent,
)

logger = logging.getLogger(__name__)


def verdict(
    backoff: Backoff, delivery: Delivery, answer: Answer, at: datetime, now: datetime
) -> DeliveryResult:
    """What an answer got at ``at`` (and ended by ``now``) decides for its delivery."""
    attempt = DeliveryAttempt(
        attempted_at=at,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        error=answer.error,
    )
    if answer.delivered:
        return DeliveryResult(
            delivery_id=delivery.id, attempt=attempt, verdict=DeliveryVerdict.DELIVERED
        )
    if backoff.is_dead(delivery.retry_since, now):
        return DeliveryResult(
            delivery_id=delivery.id, attempt=attempt, verdict=DeliveryVerdict.DEAD
        )
    return DeliveryResult(
        delivery_id=delivery.id,
        attempt=attempt,
        verdict=DeliveryVerdict.RETRY,
        next_attempt_at=backoff.next_attempt(delivery.attempts + 1, now),
    )


@dataclass
class LastAttempt:
    """The destination's latest attempt made by this process: what an operator looks at first."""

    at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    in_flight: int = 0


class Courier:
    """Hands one destination's claimed deliveries over. One per destination, with its own
    connection pool, so that a slow destination holds up nothing but itself."""

    def __init__(
        self,
        settings: DestinationSettings,
        keys: Sequence[bytes],
        payloads: EventPayloads,
        clock: Clock,
        metrics: DeliveryMetrics | None = None,
        draw: Draw = random.random,
    ) -> None:
        self.name = settings.name
        self.request = Request(settings.url, settings.timeout_seconds, settings.max_response_bytes)
        self.concurrency = settings.concurrency
        self._keys = tuple(keys)
        self._payloads = payloads
        self._backoff = Backoff.of(settings, draw)
        self._clock = clock
        self._metrics = metrics
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._ahead = Ahead(self._build_ahead, settings.concurrency)
        self._pool: DestinationPool | None = None
        self.last = LastAttempt()

    async def open(self) -> None:
        """Open the destination's own connection pool (as wide as the posts in flight, which
        the slots bound to its concurrency)."""
        self._pool = DestinationPool(self.request.url, self.request.max_response_bytes)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def deliver(
        self, store: Store, owner: str, claimed: Sequence[ClaimedDelivery], lease_until: datetime
    ) -> list[DeliveryResult]:
        """Post each claimed delivery, then keep every verdict in one ``finish_deliveries``."""
        results = await self.post(claimed, lease_until)
        await self.keep(store, owner, results)
        return results

    async def post(
        self, claimed: Sequence[ClaimedDelivery], lease_until: datetime
    ) -> list[DeliveryResult]:
        """Post each claimed delivery (as many at once as the concurrency); their verdicts."""
        answers = await asyncio.gather(*(self._attempt(item, lease_until) for item in claimed))
        return [result for result in answers if result is not None]

    async def keep(self, store: Store, owner: str, results: Sequence[DeliveryResult]) -> None:
        """Keep the verdicts of the deliveries ``owner`` still holds, in one commit."""
        if results:
            self.observe(results, await store.finish_deliveries(owner, results))

    def observe(self, results: Sequence[DeliveryResult], applied: int) -> None:
        """Count verdicts just kept, ``applied`` of them under a lease still held."""
        if results and self._metrics is not None:
            self._metrics.observe(self.name, results, applied)

    async def _attempt(
        self, claimed: ClaimedDelivery, lease_until: datetime
    ) -> DeliveryResult | None:
        waiting = self._ahead.join(claimed)
        try:
            await self._slots.acquire()
        finally:
            self._ahead.leave(waiting)
        try:
            at = self._clock()
            if at + timedelta(seconds=self.request.timeout_seconds) >= lease_until:
                return None  # too late to finish within the lease: left to be claimed again
            self.last.in_flight += 1
            try:
                answer = await self._post(waiting, at)
            finally:
                self.last.in_flight -= 1
        finally:
            self._slots.release()
        now = self._clock()
        result = verdict(self._backoff, claimed.delivery, answer, at, now)
        self.last.at, self.last.status_code, self.last.error = at, answer.status_code, answer.error
        return result

    async def _post(self, waiting: Waiting, at: datetime) -> Answer:
        assert self._pool is not None, "open() the courier first"
        prepared, event = waiting.prepared, waiting.claimed.event
        timestamp = int(at.timestamp())
        try:
            if prepared is None:
                prepared = self._prepared(self._payloads.body(event), event, timestamp)
            elif prepared.timestamp != timestamp:  # built in an earlier second: signed again
                prepared = self._prepared(prepared.body, event, timestamp)
        except Exception:  # a payload that cannot be built fails like a refused post
            logger.exception("destination %s: event %d has no payload", self.name, event.id)
            return Answer(None, 0, "the event's payload could not be built")
        self._ahead.build_soon()  # runs once this post is written
        return await send_request(self._pool, self.request, prepared.encoded)

    def _build_ahead(self, claimed: ClaimedDelivery) -> Prepared:
        event = claimed.event
        return self._prepared(self._payloads.body(event), event, int(self._clock().timestamp()))

    def _prepared(self, body: bytes, event: StoredEvent, timestamp: int) -> Prepared:
        assert self._pool is not None, "open() the courier first"
        headers = webhook_headers(self._keys, event_id(event), timestamp, body)
        headers["content-type"] = "application/json"
        return Prepared(body, timestamp, self._pool.encode(headers, body))
