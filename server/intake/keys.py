"""Typed keys for the notification gateway's parts, as the application holds them."""

from __future__ import annotations

from aiohttp import web

from server.intake.gateway import NotificationGateway, StoreSink
from server.intake.refusals import RefusalCounter

REFUSALS = web.AppKey("refusals", RefusalCounter)
GATEWAY = web.AppKey("gateway", NotificationGateway)
STORE_SINK = web.AppKey("store_sink", StoreSink)
