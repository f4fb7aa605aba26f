"""The push to ``[[destinations]]``, opened last and so closed first: its workers stop claiming
and finish what is in flight while the store is still open, then the push worker processes
(``[delivery] processes``) stop.

Only the primary process builds the application, so only it runs delivery workers; the intake,
call and push worker processes never do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from server.appkeys import SETTINGS, STORE
from server.delivery.destinations import build_deliveries
from server.delivery.keys import DELIVERY
from server.delivery.metrics import DeliveryMetrics
from server.events.keys import EVENT_PAYLOADS, EVENT_WATCH
from server.intake.keys import STORE_SINK
from server.ops.health import PoolCheck, watch_pool
from server.ops.metrics import METRICS
from server.runtime.clock import Clock
from server.workers.pool_metrics import WorkerPoolMetrics
from server.workers.push_pool import PUSH_WORKER_METRICS, PUSH_WORKERS, PushWorkers


def delivery_context(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start a worker per destination (none configured: an empty set the routes can list)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings, store = app[SETTINGS], app[STORE]
        names = [destination.name for destination in settings.destinations]
        metrics = DeliveryMetrics(app[METRICS].registry, names)
        app[METRICS].refreshes.append(functools.partial(metrics.refresh, store, clock))
        workers = await _push_workers(app)
        app[DELIVERY] = deliveries = build_deliveries(
            settings.destinations,
            settings.base_dir,
            store,
            app[EVENT_PAYLOADS],
            clock,
            watch=app[EVENT_WATCH],
            metrics=metrics,
            intake_in_flight=lambda: app[STORE_SINK].in_flight,
            handover=workers,
        )
        try:
            await deliveries.start()
            yield
        finally:
            await deliveries.stop()
            if workers is not None:
                await workers.stop()

    return context


async def _push_workers(app: web.Application) -> PushWorkers | None:
    """The push workers ``[delivery] processes`` asks for, started, or none: pushes are then
    posted here."""
    settings = app[SETTINGS]
    if not settings.delivery.processes or not settings.destinations:
        return None
    workers = PushWorkers(settings, logging.getLogger().getEffectiveLevel())
    await workers.start()
    app[PUSH_WORKERS] = workers
    # Informative only: with no push worker serving, pushes are posted here.
    watch_pool(app, "push_workers", PoolCheck(workers, required=False))
    app[METRICS].registry.register(WorkerPoolMetrics(PUSH_WORKER_METRICS, workers.counts))
    return workers
