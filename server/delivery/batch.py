"""One claimed batch of a destination: each event signed and posted (as many at once as the
destination's ``concurrency``, each within the batch's lease: ``server/delivery/poster.py``), each
answer turned into a verdict, all kept in one commit.

With ``[delivery] processes`` the posts are handed to a push worker process (a ``Handover``):
the payloads are built here, the worker signs and posts them and answers each attempt, and the
verdicts are made here from its answers, as from this process's own. With no worker serving,
this process posts itself, once the batches a worker is still posting have ended: a
destination's posts are in one place at a time, so its ``concurrency`` holds across both.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from server.delivery.backoff import Backoff, Draw
from server.delivery.metrics import DeliveryMetrics
from server.delivery.poster import Attempted, Poster
from server.delivery.posting import Answer
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


class Outgoing(NamedTuple):
    """One post handed to a push worker: the event's ``webhook-id`` and its payload's bytes."""

    webhook_id: str
    body: bytes


class Handover(Protocol):
    """Posts a destination's batch in another process (``server/workers/push_pool.py``)."""

    async def post(
        self, destination: str, items: Sequence[Outgoing], now: datetime, lease_until: datetime
    ) -> list[Attempted | None] | None:
        """Each item's attempt, in order (None: not started, its timeout no longer fitting in
        the lease); None for the whole batch when no worker took it (it is then posted here).
        ``now`` is this process's clock when the batch is handed over."""
        ...


@dataclass
class LastAttempt:
    """The destination's latest attempt made by this process: what an operator looks at first."""

    at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    in_flight: int = 0


UNBUILT = Answer(None, 0, "the event's payload could not be built")


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
        handover: Handover | None = None,
    ) -> None:
        self.name = settings.name
        self.concurrency = settings.concurrency
        self._payloads = payloads
        self._backoff = Backoff.of(settings, draw)
        self._clock = clock
        self._metrics = metrics
        self._handover = handover
        self._poster: Poster[ClaimedDelivery] = Poster(
            settings, keys, clock, lambda item: payloads.body(item.event), _webhook_id
        )
        self.request = self._poster.request
        self.last = LastAttempt()
        self._handed = 0  # batches a push worker is posting
        self._none_handed = asyncio.Event()
        self._none_handed.set()
        self._here = 0  # batches posting, or waiting to post, in this process
        self.waiting_for_worker = 0  # of those, batches waiting for a worker's batches to end

    async def open(self) -> None:
        self._poster.open()

    async def close(self) -> None:
        self._poster.close()

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
        attempts = None
        if self._handover is not None and claimed and not self._here:
            attempts = await self._hand_over(claimed, lease_until)
        if attempts is None:
            attempts = await self._post_here(claimed, lease_until)
        now = self._clock()
        results = []
        for item, attempted in zip(claimed, attempts, strict=True):
            if attempted is not None:  # else too late for the lease: left to be claimed again
                at, answer = attempted
                at = min(at, now)  # a worker's clock runs on from this one's: never past it
                results.append(verdict(self._backoff, item.delivery, answer, at, now))
                self.last.at, self.last.status_code = at, answer.status_code
                self.last.error = answer.error
        return results

    async def keep(self, store: Store, owner: str, results: Sequence[DeliveryResult]) -> None:
        """Keep the verdicts of the deliveries ``owner`` still holds, in one commit."""
        if results:
            self.observe(results, await store.finish_deliveries(owner, results))

    def observe(self, results: Sequence[DeliveryResult], applied: int) -> None:
        """Count verdicts just kept, ``applied`` of them under a lease still held."""
        if results and self._metrics is not None:
            self._metrics.observe(self.name, results, applied)

    async def _post_here(
        self, claimed: Sequence[ClaimedDelivery], lease_until: datetime
    ) -> list[Attempted | None]:
        """Post in this process, once no batch handed to a worker is still being posted: the
        two places' posts never overlap, so ``concurrency`` bounds the destination's posts in
        flight across both. While a batch posts or waits to post here, new batches join it
        (``post`` hands none over), so the wait ends."""
        self._here += 1
        try:
            if not self._none_handed.is_set():
                self.waiting_for_worker += 1
                try:
                    await self._none_handed.wait()
                finally:
                    self.waiting_for_worker -= 1
            return await asyncio.gather(*(self._attempt(c, lease_until) for c in claimed))
        finally:
            self._here -= 1

    async def _attempt(self, claimed: ClaimedDelivery, lease_until: datetime) -> Attempted | None:
        self.last.in_flight += 1
        try:
            return await self._poster.attempt(claimed, lease_until)
        finally:
            self.last.in_flight -= 1

    async def _hand_over(
        self, claimed: Sequence[ClaimedDelivery], lease_until: datetime
    ) -> list[Attempted | None] | None:
        """The batch posted by a push worker; payloads that cannot be built fail here, unsent."""
        assert self._handover is not None
        now = self._clock()
        outgoing: list[Outgoing] = []
        unbuilt: dict[int, Attempted] = {}
        for index, item in enumerate(claimed):
            try:
                outgoing.append(Outgoing(_webhook_id(item), self._payloads.body(item.event)))
            except Exception:  # fails like a refused post, as in this process
                logger.exception(
                    "destination %s: event %d has no payload", self.name, item.event.id
                )
                unbuilt[index] = Attempted(now, UNBUILT)
        self.last.in_flight += len(outgoing)
        self._handed += 1
        self._none_handed.clear()
        try:
            answered = await self._handover.post(self.name, outgoing, now, lease_until)
        finally:
            self.last.in_flight -= len(outgoing)
            self._handed -= 1
            if not self._handed:
                self._none_handed.set()
        if answered is None:
            return None
        posted = iter(answered)
        return [unbuilt[i] if i in unbuilt else next(posted) for i in range(len(claimed))]


def _webhook_id(claimed: ClaimedDelivery) -> str:
    return event_id(claimed.event)
