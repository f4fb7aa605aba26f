"""Reads asked for in one turn of the event loop, handed over together at its end.

Store-neutral, as ``storage.group_commit`` is for writes: each caller's read waits on a future of
its own, the first one of a turn schedules the hand-over (``loop.call_soon``), and the store's
``read`` gets every read still wanted (a caller that gave up meanwhile is left out). ``read`` must
settle every future it is given, with a result or an exception, and must not raise: a read left
unsettled would leave its caller waiting for ever. What a store gains by reading a turn's keys
together is its own (``storage.sqlite.point_reads``, ``storage.postgres.key_reads``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

KeyRead = tuple[str, Sequence[Any]]  # what both stores ask: a key read's statement, its values
Ask = TypeVar("Ask")
Answer = TypeVar("Answer")


class TurnReads(Generic[Ask, Answer]):
    """Gathers the reads of a turn for ``read`` (see the module docstring); event loop only."""

    def __init__(self, read: Callable[[list[tuple[Ask, asyncio.Future[Answer]]]], None]) -> None:
        self._read = read
        self._waiting: list[tuple[Ask, asyncio.Future[Answer]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    async def ask(self, ask: Ask) -> Answer:
        """The answer to ``ask``, read with the turn's other asks at the turn's end."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # what waited on another loop was never read: that loop
            self._loop, self._waiting, self._scheduled = loop, [], False  # stopped before
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((ask, future))
        if not self._scheduled:
            loop.call_soon(self._hand_over)
            self._scheduled = True
        return await future

    def _hand_over(self) -> None:
        wanted = [(ask, future) for ask, future in self._waiting if not future.done()]
        self._waiting, self._scheduled = [], False
        if wanted:
            self._read(wanted)
