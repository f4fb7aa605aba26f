"""The destinations this process pushes to, each with its worker and task: what the wiring starts
and stops, and what the ``/v1/destinations`` routes read (through ``server.delivery.keys``).

Workers run in the primary process only (the one that owns the store). At start each destination
fans out once before the service listens: a destination never seen starts at the end of the log,
so every event written once Subgate answers is one it will deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from server.delivery.backoff import Draw
from server.delivery.batch import Courier, Handover
from server.delivery.metrics import DeliveryMetrics
from server.delivery.worker import DestinationWorker
from server.events.payloads import EventPayloads
from server.events.watch import EventWatch
from server.runtime.clock import Clock
from server.settings import DestinationSettings
from storage import Store
from storage.errors import StorageError

logger = logging.getLogger(__name__)

# How long a stop lets batches in flight finish (their verdicts kept): bounded, so that a hanging
# destination cannot hold a shutdown; a post cut here is retried once its lease runs out.
STOP_GRACE_SECONDS = 5.0


class Deliveries:
    """Every configured destination's worker in this process, by name."""

    def __init__(self, workers: Sequence[DestinationWorker]) -> None:
        self._workers = {worker.name: worker for worker in workers}
        self._tasks: list[asyncio.Task[None]] = []

    def __iter__(self) -> Iterator[DestinationWorker]:
        return iter(self._workers.values())

    def get(self, name: str) -> DestinationWorker | None:
        """The destination of this name, or None (destinations come from the settings only)."""
        return self._workers.get(name)

    def wake(self, name: str) -> None:
        """Have the destination look for due deliveries now (after a replay)."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.wake()

    async def start(self) -> None:
        """Open each destination's connections, fan out once, then run each in its own task."""
        for worker in self:
            await worker.courier.open()
            try:
                await worker.fan_out()
            except StorageError as error:
                logger.warning("destination %s: first fan-out failed: %s", worker.name, error)
        for worker in self:
            task = asyncio.create_task(worker.run_forever(), name=f"subgate-push-{worker.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop claiming, let batches in flight finish (for a while), close the connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.gather(*(worker.stop(STOP_GRACE_SECONDS) for worker in self))
        for worker in self:
            await worker.courier.close()


def build_deliveries(
    destinations: Sequence[DestinationSettings],
    base_dir: Path,
    store: Store,
    payloads: EventPayloads,
    clock: Clock,
    *,
    watch: EventWatch | None = None,
    metrics: DeliveryMetrics | None = None,
    draw: Draw = random.random,
    intake_in_flight: Callable[[], int] = lambda: 0,
    handover: Handover | None = None,
) -> Deliveries:
    """A worker per destination, all leasing as one owner (this process); ``handover``: the
    push workers that post the batches (``[delivery] processes``), if any."""
    owner = f"subgate-push-{secrets.token_hex(6)}"
    workers = []
    for settings in destinations:
        keys = settings.signing_keys(base_dir)
        courier = Courier(settings, keys, payloads, clock, metrics, draw, handover)
        worker = DestinationWorker(
            settings, courier, store, clock, owner, watch, intake_in_flight, handover is not None
        )
        workers.append(worker)
    return Deliveries(workers)
