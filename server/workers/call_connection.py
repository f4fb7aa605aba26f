"""The primary's end of one call worker's socket: numbered calls out, answers matched by number,
and what happens to the calls in flight when the worker breaks, stalls or stops."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, cast

from server.platforms.calls import CallOutcome, CallResult
from server.workers.call_messages import (
    FRAME_LIMIT_BYTES,
    _result,
)
from server.workers.process_pool import Link
from server.workers.wire import (
    CALL_ANSWERS,
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    parse_payload,
)

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

    def __init__(self, answer_within: float, on_broken: Callable[[], None]) -> None:
        self._answer_within = answer_within
        self._on_broken = on_broken
        self._transport: asyncio.Transport | None = None
        self._out: CoalescedWriter | None = None  # the calls of one turn share a write
        self._reader = FrameReader(FRAME_LIMIT_BYTES)
        self._pending: dict[int, asyncio.Future[CallResult | None]] = {}
        self._abandoned: set[int] = set()  # calls nobody waits for any more (a cancelled caller)
        self._numbers = itertools.count(1)
        self._draining = False
        self._timed_out = False
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = CoalescedWriter(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("the call worker closed its socket"))
        for future in self._pending.values():
            if not future.done():
                future.set_result(CallResult(CallOutcome.UNKNOWN, error=LOST))
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                self._answer(number, kind, parse_payload(CALL_ANSWERS, kind, payload))
        except RelayError as error:
            logger.error("call worker broke the protocol (%s); replacing it", error)
            self._break()

    def _answer(self, number: int, kind: object, payload: Any) -> None:
        """One message, its payload already of the shape ``CALL_ANSWERS`` gives its kind."""
        if kind == "ready" and not self.ready.done():
            self.ready.set_result(payload)
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

    @property
    def serving(self) -> bool:
        return (
            self.ready.done()
            and not self.ready.cancelled()
            and not self.ready.exception()
            and not self.lost.is_set()
            and not self._draining
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def drain(self) -> None:
        """Give this worker no new call (it is being stopped)."""
        self._draining = True

    def _close_when_idle(self) -> None:
        """A draining worker's socket closes once no call waits on it (the worker exits then)."""
        if self._draining and not self._pending:
            self.close()

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

    def _break(self) -> None:
        self.close()
        self._on_broken()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
