"""A worker's end of its socket to the primary, shared by call and push workers: the frames in,
the answers of one event-loop turn out in one write, and the same way to stop.

A worker says "ready" with its process id once connected, hands each request frame to its own
``take``, and answers on ``send``. Stopping is the same for every kind: on SIGTERM it tells the
primary it is stopping, finishes what it is doing and answers any new request "refused" (the
primary does that work itself), then exits once the primary has closed its end; when the
primary's end closes first, nobody would get the answers, so the work in flight is cancelled.
A frame that does not parse, or asks for what this worker cannot do, closes the connection: the
primary then treats the worker as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any, cast

from server.runtime.garbage_collector import settle_garbage_collector
from server.workers.wire import CoalescedWriter, FrameReader, RelayError, encode_frame

logger = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 5.0  # after its last answer, how long a stopping worker waits for the primary


class PrimaryEnd(asyncio.Protocol):
    """The worker's end of the socket; a kind of worker says what a request is in ``take``."""

    kind = "worker"  # in log lines

    def __init__(self, frame_limit: int) -> None:
        self._reader = FrameReader(frame_limit)
        self._out: CoalescedWriter | None = None  # the answers of one turn share a write
        self.work: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self.stopping = False

    def take(self, number: int, kind: str | bool, payload: Any) -> None:
        """Act on one request frame (``RelayError`` when it is not one this worker serves)."""
        raise NotImplementedError

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (one request's), kept until it ends so that a stop can wait for it."""
        task = asyncio.create_task(work)
        self.work.add(task)
        task.add_done_callback(self.work.discard)

    def send(self, message: tuple[Any, ...]) -> None:
        if self._out is not None:
            self._out.send(encode_frame(message))

    def send_frame(self, frame: bytes) -> None:
        if self._out is not None:
            self._out.send(frame)

    def send_stopping(self) -> None:
        self.send((0, "stopping", None))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport
        self._out = CoalescedWriter(cast(asyncio.Transport, transport))
        self.send((0, "ready", os.getpid()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                self.take(number, kind, payload)
        except RelayError as error:
            logger.error("%s %d: %s; closing", self.kind, os.getpid(), error)
            self.close()


def stop_on_sigterm() -> asyncio.Event:
    """An event SIGTERM sets (the primary's way to stop its workers)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


async def serve_until_stopped(primary: PrimaryEnd, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set or the primary's end closes, then stop as the module says."""
    settle_garbage_collector()
    stopped = asyncio.create_task(stop.wait())
    closed = asyncio.create_task(primary.closed.wait())
    await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopped, closed):
        task.cancel()
    primary.stopping = True  # from now on a new request is answered "refused"
    if primary.closed.is_set():  # the primary is gone: nobody would get the answers
        for work in list(primary.work):
            work.cancel()
    else:  # the primary hands nothing more here and closes its end once answered
        primary.send_stopping()
    while primary.work:
        await asyncio.gather(*list(primary.work), return_exceptions=True)
    with contextlib.suppress(TimeoutError):  # a request already on its way is still refused
        async with asyncio.timeout(CLOSE_WAIT_SECONDS):
            await primary.closed.wait()
    primary.close()
