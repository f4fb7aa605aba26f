"""Typed keys for the event parts the feed and the delivery workers read."""

from __future__ import annotations

from aiohttp import web

from server.events.payloads import EventPayloads
from server.events.watch import EventWatch

EVENT_PAYLOADS = web.AppKey("event_payloads", EventPayloads)
EVENT_WATCH = web.AppKey("event_watch", EventWatch)
