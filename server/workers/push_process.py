"""A push worker (``[delivery] processes``): posts the batches of events the primary hands it.

Started by the primary (``server/workers/push_pool.py``) with its orders on standard input (the
destinations it posts to, with their keys) and one end of a socket pair. Each batch comes with
its payloads built and its lease; the worker signs and posts each event as the primary would
(``server/delivery/poster.py``: the destination's concurrency, its timeout and size limit, no
post started that the lease would not cover) and answers each attempt as it ends. It keeps
nothing: the primary makes and keeps every verdict.

On SIGTERM it tells the primary it is stopping, finishes the posts it has and answers a new
batch "refused" (the primary posts it itself), then exits once the primary has closed its end;
it exits at once when the primary's end closes first.

It runs at a lower scheduling priority than the primary (``NICENESS``): acknowledging Alipay comes
first, and a push can wait. When intake leaves the cores idle the worker takes them and pushes go
at full pace; when intake needs every core, the kernel gives the worker what is left, and the
backlog (kept, shown on /metrics) drains once intake calms. Without it, a worker posting a
backlog took the cores intake's load needed (bench/README.md, "Event delivery").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from server.delivery.batch import Outgoing
from server.delivery.poster import Attempted, Poster
from server.delivery.posting import Answer
from server.runtime.clock import utc_now
from server.runtime.garbage_collector import settle_garbage_collector
from server.settings import DestinationSettings
from server.workers.bootstrap import run_worker
from server.workers.push_messages import (
    FRAME_LIMIT_BYTES,
    PUSH_REQUESTS,
    PushWorkerOrders,
    answer_values,
)
from server.workers.wire import (
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    micros,
    parse_payload,
)

logger = logging.getLogger(__name__)

NICENESS = 10  # added to the primary's: intake first (the module docstring)

CLOSE_WAIT_SECONDS = 5.0  # after its last answer, how long a stopping worker waits for the primary


class _Destination:
    """One destination's poster, on the primary's clock (``offset`` ahead of this one's)."""

    def __init__(self, settings: DestinationSettings) -> None:
        self.offset = timedelta(0)
        keys = settings.signing_keys(Path())  # given as secrets: no file is read
        self.poster: Poster[Outgoing] = Poster(
            settings, keys, self.now, lambda item: item.body, lambda item: item.webhook_id
        )

    def now(self) -> datetime:
        return utc_now() + self.offset


class _PrimaryConnection(asyncio.Protocol):
    def __init__(self, destinations: Mapping[str, _Destination]) -> None:
        self._destinations = destinations
        self._reader = FrameReader(FRAME_LIMIT_BYTES)
        self._out: CoalescedWriter | None = None  # the answers of one turn share a write
        self.posts: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self.stopping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._out = CoalescedWriter(cast(asyncio.Transport, transport))  # uvloop's too
        self._send((0, "ready", os.getpid()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                name, lease_until, offset, items = parse_payload(PUSH_REQUESTS, kind, payload)
                destination = self._destinations.get(name)
                if destination is None:
                    raise RelayError(f"unknown destination {name!r}")
                if self.stopping:
                    self._send((number, "refused", None))
                    continue
                destination.offset = timedelta(microseconds=offset)
                for index, (webhook_id, body) in enumerate(items):
                    item = Outgoing(webhook_id, body)
                    task = asyncio.create_task(
                        self._post(number, index, destination, item, lease_until)
                    )
                    self.posts.add(task)
                    task.add_done_callback(self.posts.discard)
        except RelayError as error:
            logger.error("push worker %d: %s; closing", os.getpid(), error)
            self.close()

    async def _post(
        self,
        number: int,
        index: int,
        destination: _Destination,
        item: Outgoing,
        lease_until: datetime,
    ) -> None:
        try:
            attempted = await destination.poster.attempt(item, lease_until)
        except Exception:  # a bug: the attempt fails, and is retried as any failed one
            logger.exception("push worker %d: a post failed", os.getpid())
            attempted = Attempted(destination.now(), Answer(None, 0, "the push worker failed"))
        if attempted is None:
            self._send((number, "late", index))
        else:
            at, answer = attempted
            self._send((number, "answer", answer_values(index, answer, micros(at))))

    def send_stopping(self) -> None:
        self._send((0, "stopping", None))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._out is not None:
            self._out.send(encode_frame(message))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def serve(orders: PushWorkerOrders) -> None:
    os.nice(NICENESS)  # raising one's own niceness needs no privilege
    destinations = {d.name: _Destination(d) for d in orders.destinations}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sock = socket.socket(fileno=orders.socket_fd)
    for destination in destinations.values():
        destination.poster.open()
    try:
        _, primary = await loop.create_connection(
            lambda: _PrimaryConnection(destinations), sock=sock
        )
        settle_garbage_collector()
        stopped = asyncio.create_task(stop.wait())
        closed = asyncio.create_task(primary.closed.wait())
        await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, closed):
            task.cancel()
        primary.stopping = True  # from now on a new batch is answered "refused"
        if primary.closed.is_set():  # the primary is gone: nobody would get the answers
            for post in list(primary.posts):
                post.cancel()
        else:  # the primary hands nothing more here and closes its end once answered
            primary.send_stopping()
        while primary.posts:
            await asyncio.gather(*list(primary.posts), return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # a batch already on its way is still refused
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await primary.closed.wait()
        primary.close()
    finally:
        for destination in destinations.values():
            destination.poster.close()


def main() -> int:
    # A socket that is gone, a destination that no longer validates: exit 2.
    return run_worker("push worker", PushWorkerOrders, serve, (Exception,), logger)


if __name__ == "__main__":
    sys.exit(main())
