"""The events feed of the /v1 API, on the event parts (``server.wiring.events``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Gauge

from server.api.keys import FEED
from server.appkeys import STORE
from server.events.feed import EventFeed
from server.events.keys import EVENT_PAYLOADS, EVENT_WATCH
from server.ops.metrics import METRICS


async def feed_context(app: web.Application) -> AsyncIterator[None]:
    """Opened after the event parts; its long-polls are counted on /metrics."""
    app[FEED] = feed = EventFeed(app[STORE], app[EVENT_PAYLOADS], app[EVENT_WATCH])
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
