"""Typed keys for what the /v1 operations read from the application."""

from __future__ import annotations

from aiohttp import web

from server.api.auth import TokenRing
from server.api.destination_desk import DeliveryDesk
from server.consent.ledger import ConsentLedger
from server.consent.reconcile import Reconciler
from server.events.feed import EventFeed
from server.sending.sender import MessageSender

LEDGER = web.AppKey("ledger", ConsentLedger)
TOKENS = web.AppKey("tokens", TokenRing)
SENDER = web.AppKey("sender", MessageSender)
RECONCILER = web.AppKey("reconciler", Reconciler)
FEED = web.AppKey("feed", EventFeed)
DESK = web.AppKey("delivery_desk", DeliveryDesk)
