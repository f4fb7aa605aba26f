"""Typed keys for the push's parts that routes read: the running destinations."""

from __future__ import annotations

from aiohttp import web

from server.delivery.destinations import Deliveries

DELIVERY = web.AppKey("delivery", Deliveries)
