"""``[delivery] processes``: pushes posted by worker processes.

A push's HTTP work (signing, writing the request, reading the answer, and the event loop's
polling that goes with it) took most of the primary's event-loop time per push, and shares one
GIL with intake and the store's writer (bench/README.md, "Event delivery"). With ``processes =
N`` each destination's batches are handed to one of N worker processes (``python -m
server.workers.push_process``; destination i to worker i mod N, so that the destination's
``concurrency`` bounds its posts in flight across processes) as plain values over a private
socket pair. The store stays here: claims, fan-out, verdicts and their backoff are the
primary's, and the payloads are built here. A worker holds the destinations' URLs and signing
keys and nothing else (no app key, API token or database URL).

What can go wrong:

- no worker serving the destination (starting again after a crash, or stopping): the primary
  posts the batch itself, as without workers; a stopping worker answers a new batch "refused";
- a worker dies, breaks the protocol, or leaves a batch unanswered past its lease: each attempt
  it had not answered is recorded as failed ("the push worker was lost ...") and retried by
  the destination's backoff, so every event is still delivered at least once;
- a worker that died (or was killed) is started again, at once if it had run a while, else after
  a back-off; from the start of a shutdown none is (``server/workers/process_pool.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from aiohttp import web

from server.delivery.batch import Outgoing
from server.delivery.poster import Attempted
from server.runtime.log_format import active_log_format
from server.settings import Settings
from server.workers.pool_metrics import WorkerCounts, WorkerMetricNames
from server.workers.process_pool import ProcessPool, WorkerKind
from server.workers.push_link import ANSWER_MARGIN_SECONDS, PushLink
from server.workers.push_messages import PushWorkerOrders, with_keys
from server.workers.wire import RelayError

logger = logging.getLogger(__name__)


class PushWorkers:
    """Posts destinations' batches in worker processes: the couriers' ``Handover``."""

    def __init__(self, settings: Settings, log_level: int) -> None:
        destinations = [
            with_keys(destination, destination.signing_keys(settings.base_dir))
            for destination in settings.destinations
        ]
        loop_choice = settings.server.event_loop
        longest = max((d.timeout_seconds for d in destinations), default=0.0)
        kind = WorkerKind(
            name="push worker",
            module="server.workers.push_process",
            orders=lambda fd: PushWorkerOrders(
                destinations, fd, log_level, active_log_format(), loop_choice
            ),
            link=lambda on_broken: PushLink(on_broken, self._count_lost),
            stop_grace_seconds=longest + ANSWER_MARGIN_SECONDS,
        )
        self.pool = ProcessPool(kind, settings.delivery.processes)
        self._slot_of = {d.name: index for index, d in enumerate(destinations)}
        self.handed = 0  # attempts handed to a worker
        self.posted_here = 0  # posted by the primary: no worker served the destination
        self.lost = 0  # attempts recorded as failed: their worker was lost or did not answer

    @property
    def pids(self) -> list[int]:
        return self.pool.pids

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def counts(self) -> WorkerCounts:
        """What /metrics shows (``PUSH_WORKER_METRICS``)."""
        return WorkerCounts(len(self.pids), self.handed, self.posted_here, self.lost, self.restarts)

    def _count_lost(self, count: int) -> None:
        self.lost += count

    def hold_restarts(self) -> None:
        self.pool.hold_restarts()

    async def start(self) -> None:
        """Start every worker; raise ``WorkerStartFailed`` (leaving none running) if one cannot."""
        await self.pool.start()
        logger.info("%d push worker(s) post the events", self.pool.count)

    async def stop(self) -> None:
        await self.pool.stop()

    async def post(
        self, destination: str, items: Sequence[Outgoing], now: datetime, lease_until: datetime
    ) -> list[Attempted | None] | None:
        """``Handover.post``: the destination's worker posts the batch, or None (post here)."""
        slot = self._slot_of.get(destination)
        link = None if slot is None else self.pool.serving(slot)
        attempts = None
        if link is not None:
            try:
                attempts = await link.post(destination, items, now, lease_until)
            except RelayError:  # not encodable (nothing was sent): posted here
                logger.exception("destination %s: batch not handed over", destination)
        if attempts is None:
            self.posted_here += len(items)
        else:
            self.handed += len(items)
        return attempts


PUSH_WORKERS = web.AppKey("push_workers", PushWorkers)


PUSH_WORKER_METRICS = WorkerMetricNames(
    "subgate_push_workers",
    "Push worker processes serving now.",
    "subgate_push_attempts",
    "Push attempts by where they were posted ([delivery] processes).",
    "subgate_push_attempts_lost",
    "Push attempts recorded as failed because their worker died or did not answer.",
    "subgate_push_worker_restarts",
    "Push workers started again after one died.",
)
