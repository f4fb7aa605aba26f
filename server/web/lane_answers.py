"""A lane connection's answers: one at a time, in the order its requests came.

HTTP/1.1 lets a client send requests without waiting for answers (pipelining), and answers must
come back in the same order. A connection's requests read whole wait here, each for the route's
answer or with a refusal already decided, and one task writes them out in order, then tells the
connection (``server/web/lane_connection.py``) it has answered everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from server.web.lane import LaneAnswer, LaneRequest, LaneRoute, encode_answer
from server.web.lane_access_log import log_access

logger = logging.getLogger(__name__)

MAX_QUEUED = 16  # pipelined requests waiting for their answer before reading pauses
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(slots=True)
class Pending:
    """A request waiting for its answer, or a refusal already decided (``answer``)."""

    request: LaneRequest | None
    keep_alive: bool
    answer: LaneAnswer | None = None


class AnswerOwner(Protocol):
    def close(self, gently: bool) -> None: ...

    def answered_all(self) -> None: ...


class AnswerQueue:
    def __init__(self, route: LaneRoute, owner: AnswerOwner) -> None:
        self._route = route
        self._owner = owner
        self._queue: deque[Pending] = deque()
        self._task: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None

    @property
    def idle(self) -> bool:
        return not self._queue and self._task is None

    @property
    def full(self) -> bool:
        return len(self._queue) >= MAX_QUEUED

    def let_body_come(self) -> None:
        """Answer ``Expect: 100-continue`` (RFC 9110): at once when no earlier answer is due,
        else not at all (the client sends its body after its own wait)."""
        if self.idle and self.transport is not None:
            self.transport.write(CONTINUE)

    def add(self, pending: Pending) -> None:
        self._queue.append(pending)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._answer_all())

    async def _answer_all(self) -> None:
        try:
            while self._queue:
                pending = self._queue[0]
                answer = pending.answer
                if answer is None:
                    assert pending.request is not None
                    try:
                        answer = await self._route.answer(pending.request)
                    except Exception:  # a route must not raise: nothing can be said after it
                        logger.exception("the lane's route failed to answer")
                        self._queue.clear()
                        self._owner.close(gently=False)
                        break
                self._queue.popleft()
                self._write(answer, pending)
                if not pending.keep_alive:
                    self._queue.clear()
                    self._owner.close(gently=pending.answer is not None)
        finally:
            self._task = None
            self._owner.answered_all()

    def _write(self, answer: LaneAnswer, pending: Pending) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client left: the answer has nobody to go to
        version = "1.1" if pending.request is None else pending.request.version
        written = encode_answer(answer, pending.keep_alive, version)
        transport.write(written)
        if pending.request is not None:
            log_access(transport, pending.request, answer.status, len(written))
