"""The /v1 parts that read the event log: the feed, and the desk of the destinations (which
wakes a destination's worker after a replay, through ``DELIVERY``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import Gauge

from server.api.destination_desk import DeliveryDesk
from server.api.keys import DESK, FEED
from server.appkeys import SETTINGS, STORE
from server.delivery.keys import DELIVERY
from server.events.feed import EventFeed
from server.events.keys import EVENT_PAYLOADS, EVENT_WATCH
from server.ops.metrics import METRICS
from server.runtime.clock import Clock


def events_api_context(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    """Opened after the event parts; the feed's long-polls are counted on /metrics."""

    async def events_api(app: web.Application) -> AsyncIterator[None]:
        app[FEED] = feed = EventFeed(app[STORE], app[EVENT_PAYLOADS], app[EVENT_WATCH])
        settings = app[SETTINGS]
        app_ids = [app_settings.app_id for app_settings in settings.apps]
        app[DESK] = DeliveryDesk(
            app[STORE],
            settings.destinations,
            app_ids,
            clock,
            wake=lambda name: app[DELIVERY].wake(name),  # DELIVERY opens later, before serving
        )
        gauge = Gauge(
            "subgate_feed_long_polls",
            "Feed requests waiting for an event (wait=) right now.",
            registry=app[METRICS].registry,
        )
        gauge.set_function(lambda: feed.waiting)
        try:
            yield
        finally:
            app[METRICS].registry.unregister(gauge)

    return events_api
