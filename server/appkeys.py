"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from server.auth import TokenRing
from server.consent import ConsentLedger
from server.credentials import AppCredentials
from server.gateway import NotificationGateway, StoreSink
from server.reconcile import Reconciler
from server.refusals import RefusalCounter
from server.sender import MessageSender
from server.settings import Settings
from storage import Store

SETTINGS = web.AppKey("settings", Settings)
CREDENTIALS = web.AppKey("credentials", dict[str, AppCredentials])
STORE = web.AppKey("store", Store)
REFUSALS = web.AppKey("refusals", RefusalCounter)
GATEWAY = web.AppKey("gateway", NotificationGateway)
STORE_SINK = web.AppKey("store_sink", StoreSink)
LEDGER = web.AppKey("ledger", ConsentLedger)
TOKENS = web.AppKey("tokens", TokenRing)
SENDER = web.AppKey("sender", MessageSender)
RECONCILER = web.AppKey("reconciler", Reconciler)
