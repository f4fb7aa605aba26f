"""The event parts every consumer of the log shares: payloads and the watch on the log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from server.appkeys import CREDENTIALS, SETTINGS, STORE
from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.events.keys import EVENT_PAYLOADS, EVENT_WATCH
from server.events.payloads import EventPayloads
from server.events.watch import EventWatch
from server.ops.metrics import METRICS


async def events_context(app: web.Application) -> AsyncIterator[None]:
    """Opened after the store: every commit pokes the watch (beside the commit-time metric)."""
    store, metrics = app[STORE], app[METRICS]
    credentials: dict[str, AppCredentials] = app[CREDENTIALS]
    app[EVENT_PAYLOADS] = EventPayloads(credentials, TemplateRegistry(app[SETTINGS].apps))
    app[EVENT_WATCH] = watch = EventWatch(store)
    await watch.start()

    def observe(seconds: float, writes: int) -> None:
        metrics.observe_commit(seconds, writes)
        watch.poke()

    store.observe_commits(observe)
    try:
        yield
    finally:
        store.observe_commits(metrics.observe_commit)
        await watch.stop()
