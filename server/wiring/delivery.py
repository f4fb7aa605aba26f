"""The push to ``[[destinations]]``, opened last and so closed first: its workers stop claiming
and finish what is in flight while the store is still open.

Only the primary process builds the application, so only it runs delivery workers; the intake
and call worker processes never do.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from server.appkeys import SETTINGS, STORE
from server.delivery.destinations import build_deliveries
from server.delivery.keys import DELIVERY
from server.delivery.metrics import DeliveryMetrics
from server.events.keys import EVENT_PAYLOADS, EVENT_WATCH
from server.intake.keys import STORE_SINK
from server.ops.metrics import METRICS
from server.runtime.clock import Clock


def delivery_context(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start a worker per destination (none configured: an empty set the routes can list)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings, store = app[SETTINGS], app[STORE]
        names = [destination.name for destination in settings.destinations]
        metrics = DeliveryMetrics(app[METRICS].registry, names)
        app[METRICS].refreshes.append(functools.partial(metrics.refresh, store, clock))
        app[DELIVERY] = deliveries = build_deliveries(
            settings.destinations,
            settings.base_dir,
            store,
            app[EVENT_PAYLOADS],
            clock,
            watch=app[EVENT_WATCH],
            metrics=metrics,
            intake_in_flight=lambda: app[STORE_SINK].in_flight,
        )
        await deliveries.start()
        try:
            yield
        finally:
            await deliveries.stop()

    return context
