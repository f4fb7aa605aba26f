"""The primary's end of one call worker's socket: numbered calls out, answers matched by number,
and what happens to the calls in flight when the worker breaks, stalls or stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from server.platforms.calls import CallOutcome, CallResult
from server.workers.call_messages import (
    FRAME_LIMIT_BYTES,
    _result,
)
from server.workers.wire import CALL_ANSWERS, RelayError, encode_frame, parse_payload
from server.workers.worker_link import Link

LOST = "the call process was lost before it answered; the platform may have acted on the call"

logger = logging.getLogger(__name__)


NO_ANSWER = "the call process did not answer in time; the platform may have acted on the call"


class CallConnection(Link):
    """The primary's end of one worker's socket: numbered calls, answers matched by number.

    A worker that breaks the protocol is broken at once (``on_broken`` kills it, so that it is
    replaced) and its calls in flight end ``UNKNOWN``. One that leaves a call unanswered past its
    deadline gets no new call and is broken once its other calls have had their own deadlines.
    A worker that got SIGTERM says "stopping": it gets no new call, and its socket closes once
    its calls are answered."""

    kind = "call worker"

    def __init__(self, answer_within: float, on_broken: Callable[[], None]) -> None:
        super().__init__(FRAME_LIMIT_BYTES, on_broken)
        self._answer_within = answer_within
        self._pending: dict[int, asyncio.Future[CallResult | None]] = {}
        self._abandoned: set[int] = set()  # calls nobody waits for any more (a cancelled caller)
        self._timed_out = False

    def end_in_flight(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_result(CallResult(CallOutcome.UNKNOWN, error=LOST))
        self._pending.clear()

    def idle(self) -> bool:
        return not self._pending

    def received(self, number: int, kind: str | bool, payload: Any) -> None:
        """One message, its payload of the shape ``CALL_ANSWERS`` gives its kind."""
        payload = parse_payload(CALL_ANSWERS, kind, payload)
        if kind == "ready":
            self._ready(payload)
            return
        if number in self._abandoned:
            self._abandoned.discard(number)  # its caller stopped waiting (shutdown): drop it
            return
        if kind == "stopping":  # the worker got SIGTERM: route nothing more to it
            self.drain()
            self._close_when_idle()
            return
        if kind not in ("answer", "refused") or number not in self._pending:
            raise RelayError(f"unexpected frame {kind!r} for call {number!r}")
        # "refused": a stopping worker did not make the call; None tells the caller so.
        result = _result(payload) if kind == "answer" else None
        future = self._pending[number]
        if not future.done():
            future.set_result(result)

    async def call(self, request: tuple[Any, ...]) -> CallResult | None:
        """The worker's result; None if it did not make the call (it was stopping)."""
        assert self._out is not None
        number = next(self._numbers)
        frame = encode_frame((number, "call", request))
        future: asyncio.Future[CallResult | None] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        self._out.send(frame)
        try:
            async with asyncio.timeout(self._answer_within):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done():  # the answer came in the same turn as the deadline
                return future.result()
            # Stuck, or this loop stalled: give it nothing more, and replace it once its other
            # calls have had their own deadlines (so an answer already on its way still counts).
            logger.error("call worker left call %d unanswered; replacing it", number)
            self._timed_out = True
            self.drain()
            return CallResult(CallOutcome.UNKNOWN, error=NO_ANSWER)
        finally:
            self._pending.pop(number, None)
            if not future.done():  # timed out, or its caller was cancelled: drop a late answer
                self._abandoned.add(number)
            if self._timed_out and not self._pending:
                self._break()
            else:
                self._close_when_idle()
