"""The primary's end of one push worker's socket: numbered batches out, each attempt's answer
matched to its batch and item, and what the attempts in flight become when the worker is lost.

An attempt whose answer never comes (the worker died, broke the protocol, or did not answer by
the end of the batch's lease) is recorded as a failed attempt with ``LOST`` or ``NO_ANSWER``:
the delivery is retried by the usual backoff, so the event is delivered at least once (the
worker may have posted it). A worker that breaks the protocol or leaves a batch unanswered past
its lease is killed (``on_broken``), so that no post of it is in flight once the lease is over,
and its watcher starts another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from server.delivery.batch import Outgoing
from server.delivery.poster import Attempted
from server.delivery.posting import Answer
from server.runtime.clock import utc_now
from server.workers.push_messages import FRAME_LIMIT_BYTES, PUSH_ANSWERS, batch_request
from server.workers.wire import (
    RelayError,
    encode_frame,
    micros,
    parse_payload,
)
from server.workers.worker_link import Link

logger = logging.getLogger(__name__)

LOST = "the push worker was lost before it answered; the event may have been delivered"
NO_ANSWER = "the push worker did not answer within the lease; the event may have been delivered"
# After a batch's lease has ended, how long its answers may still take on their way here.
ANSWER_MARGIN_SECONDS = 5.0


class _Batch:
    """One batch handed over: its attempts as their answers come."""

    def __init__(self, size: int, at: datetime) -> None:
        self.at = at  # the primary's clock when it was handed over
        self.started = time.perf_counter()
        self.attempts: list[Attempted | None] = [None] * size
        self.missing = set(range(size))
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def answer(self, index: int, attempted: Attempted | None) -> None:
        if index not in self.missing:
            raise RelayError(f"no attempt {index} is awaited")
        self.missing.discard(index)
        self.attempts[index] = attempted
        if not self.missing and not self.done.done():
            self.done.set_result(True)

    def refuse(self) -> None:
        if not self.done.done():
            self.done.set_result(False)

    def give_up(self, error: str) -> int:
        """Every attempt not answered fails with ``error``; how many."""
        latency_ms = round((time.perf_counter() - self.started) * 1000)
        for index in self.missing:
            self.attempts[index] = Attempted(self.at, Answer(None, latency_ms, error))
        lost, self.missing = len(self.missing), set()
        if not self.done.done():
            self.done.set_result(True)
        return lost


class PushLink(Link):
    """The primary's end of one push worker's socket."""

    kind = "push worker"

    def __init__(
        self, on_broken: Callable[[], None], on_lost: Callable[[int], None] = lambda count: None
    ) -> None:
        super().__init__(FRAME_LIMIT_BYTES, on_broken)
        self._on_lost = on_lost  # told how many attempts ended LOST or NO_ANSWER
        self._batches: dict[int, _Batch] = {}

    def end_in_flight(self) -> None:
        for batch in self._batches.values():
            self._on_lost(batch.give_up(LOST))
        self._batches.clear()

    def idle(self) -> bool:
        return not self._batches

    def received(self, number: int, kind: str | bool, payload: Any) -> None:
        payload = parse_payload(PUSH_ANSWERS, kind, payload)
        if kind == "ready":
            self._ready(payload)
            return
        if kind == "stopping":  # the worker got SIGTERM: hand nothing more to it
            self.drain()
            self._close_when_idle()
            return
        batch = self._batches.get(number)
        if batch is None:  # its batch was given up (a cancelled caller): dropped
            return
        if kind == "refused":
            batch.refuse()
        elif kind == "late":
            batch.answer(payload, None)
        else:
            index, status, latency_ms, error, at = payload
            batch.answer(index, Attempted(at, Answer(status, latency_ms, error)))

    async def post(
        self, destination: str, items: Sequence[Outgoing], now: datetime, lease_until: datetime
    ) -> list[Attempted | None] | None:
        """Each item's attempt (``Handover.post``); None when the worker refused the batch.
        ``RelayError`` when the batch cannot be encoded (nothing was sent)."""
        assert self._out is not None
        offset = micros(now) - micros(utc_now())  # 0 but when the primary's clock is a test's
        number = next(self._numbers)
        frame = encode_frame(
            (number, "batch", batch_request(destination, micros(lease_until), offset, items))
        )
        batch = self._batches[number] = _Batch(len(items), now)
        self._out.send(frame)
        wait = (lease_until - now).total_seconds() + ANSWER_MARGIN_SECONDS
        try:
            try:
                async with asyncio.timeout(wait):
                    answered = await asyncio.shield(batch.done)
            except TimeoutError:
                logger.error("push worker left a batch unanswered past its lease; replacing it")
                self._on_lost(batch.give_up(NO_ANSWER))
                self._break()
                return batch.attempts
            return batch.attempts if answered else None
        finally:
            self._batches.pop(number, None)
            self._close_when_idle()
