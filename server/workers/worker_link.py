"""The primary's end of one worker's socket, as every pool of workers has it: numbered requests
out (those of one event-loop turn in one write), the worker's "ready", whether it serves, and
what draining and breaking it mean.

A kind of link (``CallConnection``, ``PushLink``) says what an answer is (``received``), what its
work in flight becomes when the socket closes (``end_in_flight``) and whether any is waiting
(``idle``). A worker that breaks the protocol is broken at once: ``on_broken`` kills it, so that
its pool starts another. A draining worker gets nothing new, and its socket closes once nothing
waits on it (the worker then exits).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, cast

from server.workers.wire import CoalescedWriter, FrameReader, RelayError

logger = logging.getLogger(__name__)


class Link(asyncio.Protocol):
    """The primary's end of one worker's socket (see the module docstring)."""

    kind = "worker"  # in log lines

    def __init__(self, frame_limit: int, on_broken: Callable[[], None]) -> None:
        self._on_broken = on_broken
        self._transport: asyncio.Transport | None = None
        self._out: CoalescedWriter | None = None  # the requests of one turn share a write
        self._reader = FrameReader(frame_limit)
        self._numbers = itertools.count(1)
        self._draining = False
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()

    def received(self, number: int, kind: str | bool, payload: Any) -> None:
        """One frame from the worker (``RelayError`` if it breaks the protocol)."""
        raise NotImplementedError

    def end_in_flight(self) -> None:
        """The socket closed: settle every request still waiting for its answer."""
        raise NotImplementedError

    def idle(self) -> bool:
        """Whether no request waits for its answer."""
        raise NotImplementedError

    @property
    def serving(self) -> bool:
        """Whether the worker takes work now."""
        return (
            self.ready.done()
            and not self.ready.cancelled()
            and self.ready.exception() is None
            and not self.closed.is_set()
            and not self._draining
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def drain(self) -> None:
        """Give the worker nothing new (it is being stopped)."""
        self._draining = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    def _ready(self, pid: int) -> None:
        if not self.ready.done():
            self.ready.set_result(pid)

    def _close_when_idle(self) -> None:
        if self._draining and self.idle():
            self.close()

    def _break(self) -> None:
        self.close()
        self._on_broken()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = CoalescedWriter(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"the {self.kind} closed its socket"))
        self.end_in_flight()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                self.received(number, kind, payload)
        except RelayError as error:
            logger.error("%s broke the protocol (%s); replacing it", self.kind, error)
            self._break()
