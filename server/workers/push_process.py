"""A push worker (``[delivery] processes``): posts the batches of events the primary hands it.

Started by the primary (``server/workers/push_pool.py``) with its orders on standard input (the
destinations it posts to, with their keys) and one end of a socket pair. Each batch comes with
its payloads built and its lease; the worker signs and posts each event as the primary would
(``server/delivery/poster.py``: the destination's concurrency, its timeout and size limit, no
post started that the lease would not cover) and answers each attempt as it ends. It keeps
nothing: the primary makes and keeps every verdict.

It stops as every worker does (``server/workers/primary_end.py``): a batch refused while stopping
is posted by the primary itself.

It runs at a lower scheduling priority than the primary (``NICENESS``): acknowledging Alipay comes
first, and a push can wait. When intake leaves the cores idle the worker takes them and pushes go
at full pace; when intake needs every core, the kernel gives the worker what is left, and the
backlog (kept, shown on /metrics) drains once intake calms. Without it, a worker posting a
backlog took the cores intake's load needed (bench/README.md, "Event delivery").
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from server.delivery.batch import Outgoing
from server.delivery.poster import Attempted, Poster
from server.delivery.posting import Answer
from server.runtime.clock import utc_now
from server.settings import DestinationSettings
from server.workers.bootstrap import run_worker
from server.workers.primary_end import PrimaryEnd, serve_until_stopped, stop_on_sigterm
from server.workers.push_messages import (
    FRAME_LIMIT_BYTES,
    PUSH_REQUESTS,
    PushWorkerOrders,
    answer_values,
)
from server.workers.wire import RelayError, micros, parse_payload

logger = logging.getLogger(__name__)

NICENESS = 10  # added to the primary's: intake first (the module docstring)


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


class _PrimaryConnection(PrimaryEnd):
    kind = "push worker"

    def __init__(self, destinations: Mapping[str, _Destination]) -> None:
        super().__init__(FRAME_LIMIT_BYTES)
        self._destinations = destinations

    def take(self, number: int, kind: str | bool, payload: Any) -> None:
        name, lease_until, offset, items = parse_payload(PUSH_REQUESTS, kind, payload)
        destination = self._destinations.get(name)
        if destination is None:
            raise RelayError(f"unknown destination {name!r}")
        if self.stopping:
            self.send((number, "refused", None))
            return
        destination.offset = timedelta(microseconds=offset)
        for index, (webhook_id, body) in enumerate(items):
            item = Outgoing(webhook_id, body)
            self.start(self._post(number, index, destination, item, lease_until))

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
            self.send((number, "late", index))
        else:
            at, answer = attempted
            self.send((number, "answer", answer_values(index, answer, micros(at))))


async def serve(orders: PushWorkerOrders) -> None:
    os.nice(NICENESS)  # raising one's own niceness needs no privilege
    destinations = {d.name: _Destination(d) for d in orders.destinations}
    loop = asyncio.get_running_loop()
    stop = stop_on_sigterm()
    sock = socket.socket(fileno=orders.socket_fd)
    for destination in destinations.values():
        destination.poster.open()
    try:
        _, primary = await loop.create_connection(
            lambda: _PrimaryConnection(destinations), sock=sock
        )
        await serve_until_stopped(primary, stop)
    finally:
        for destination in destinations.values():
            destination.poster.close()


def main() -> int:
    # A socket that is gone, a destination that no longer validates: exit 2.
    return run_worker("push worker", PushWorkerOrders, serve, (Exception,), logger)


if __name__ == "__main__":
    sys.exit(main())
