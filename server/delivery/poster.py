"""One destination's posts in the process that makes them: the primary (``Courier``) or a push
worker (``server/workers/push_process.py``), which share this code so that both keep the same
rules.

As many posts are in flight at once as the destination's ``concurrency`` (its slots). A post is
started only while its whole timeout still fits in the batch's lease: a post can then never be in
flight after the lease ends, when another replica may claim the same delivery. A post left
unstarted keeps its lease until it runs out and is claimed again. Each request (payload,
signatures, bytes) is built ahead while the slots are busy (``server/delivery/ahead.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from server.delivery.ahead import Ahead, Prepared, Waiting
from server.delivery.pool import DestinationPool
from server.delivery.posting import Answer, Request, send_request
from server.delivery.signing import webhook_headers
from server.runtime.clock import Clock
from server.settings import DestinationSettings

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


class Attempted(NamedTuple):
    """One attempt made: when it started (the clock of the process that handed it over) and what
    it got."""

    at: datetime
    answer: Answer


class Poster(Generic[Item]):
    """Posts one destination's items; ``body_of`` builds an item's payload (it may raise: the
    attempt then fails as a refused post would) and ``id_of`` gives its ``webhook-id``."""

    def __init__(
        self,
        settings: DestinationSettings,
        keys: Sequence[bytes],
        clock: Clock,
        body_of: Callable[[Item], bytes],
        id_of: Callable[[Item], str],
    ) -> None:
        self.name = settings.name
        self.request = Request(settings.url, settings.timeout_seconds, settings.max_response_bytes)
        self._keys = tuple(keys)
        self._clock = clock
        self._body_of = body_of
        self._id_of = id_of
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._ahead: Ahead[Item] = Ahead(self._build_ahead, settings.concurrency)
        self._pool: DestinationPool | None = None
        self.in_flight = 0

    def open(self) -> None:
        """Open the destination's own connection pool (as wide as the posts in flight, which
        the slots bound to its concurrency)."""
        self._pool = DestinationPool(self.request.url, self.request.max_response_bytes)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def attempt(self, item: Item, lease_until: datetime) -> Attempted | None:
        """Post ``item`` once a slot is free; None when its timeout no longer fits in the lease
        (left to be claimed again)."""
        waiting = self._ahead.join(item)
        try:
            await self._slots.acquire()
        finally:
            self._ahead.leave(waiting)
        try:
            at = self._clock()
            if at + timedelta(seconds=self.request.timeout_seconds) >= lease_until:
                return None
            self.in_flight += 1
            try:
                return Attempted(at, await self._post(waiting, at))
            finally:
                self.in_flight -= 1
        finally:
            self._slots.release()

    async def _post(self, waiting: Waiting[Item], at: datetime) -> Answer:
        assert self._pool is not None, "open() the poster first"
        prepared, item = waiting.prepared, waiting.claimed
        timestamp = int(at.timestamp())
        try:
            if prepared is None:
                prepared = self._prepared(self._body_of(item), item, timestamp)
            elif prepared.timestamp != timestamp:  # built in an earlier second: signed again
                prepared = self._prepared(prepared.body, item, timestamp)
        except Exception:  # a payload that cannot be built fails like a refused post
            logger.exception("destination %s: %s has no payload", self.name, self._id_of(item))
            return Answer(None, 0, "the event's payload could not be built")
        self._ahead.build_soon()  # runs once this post is written
        return await send_request(self._pool, self.request, prepared.encoded)

    def _build_ahead(self, item: Item) -> Prepared:
        return self._prepared(self._body_of(item), item, int(self._clock().timestamp()))

    def _prepared(self, body: bytes, item: Item, timestamp: int) -> Prepared:
        assert self._pool is not None, "open() the poster first"
        headers = webhook_headers(self._keys, self._id_of(item), timestamp, body)
        headers["content-type"] = "application/json"
        return Prepared(body, timestamp, self._pool.encode(headers, body))
