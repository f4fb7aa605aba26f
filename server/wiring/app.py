"""build_app(settings) -> the aiohttp application, with its resources opened in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

from aiohttp import web

from server.api.auth import TokenRing
from server.api.keys import LEDGER, TOKENS
from server.api.openapi import serve_openapi
from server.api.routes import setup_api_routes
from server.appkeys import CREDENTIALS, SETTINGS, STORE
from server.consent.ledger import ConsentLedger
from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials, load_credentials
from server.intake.default_handlers import default_registry
from server.intake.gateway import NotificationGateway, StoreSink
from server.intake.handlers import HandlerRegistry
from server.intake.keys import GATEWAY, REFUSALS, STORE_SINK
from server.intake.lane_route import setup_notifications
from server.intake.refusals import RefusalCounter
from server.ops.health import PoolCheck, setup_health_routes, watch_pool
from server.ops.metrics import METRICS, Metrics, serve_metrics
from server.runtime.clock import Clock, utc_now
from server.runtime.log_redaction import redact_parser_errors
from server.settings import Settings, StorageSettings
from server.web.error_middleware import error_middleware
from server.wiring.console import add_console
from server.wiring.delivery import delivery_context
from server.wiring.events import events_context
from server.wiring.events_api import events_api_context
from server.wiring.sending import outbound_context
from server.workers.call_pool import CALL_WORKERS
from server.workers.intake_pool import INTAKE_WORKERS, IntakeWorkers
from server.workers.push_pool import PUSH_WORKERS
from storage import Store, open_store
from storage.errors import StorageError

logger = logging.getLogger(__name__)


async def open_configured_store(storage: StorageSettings) -> Store:
    """The store ``[storage]`` names, with its durability, lock-wait and pool settings."""
    return await open_store(
        storage.url,
        synchronous=storage.synchronous,
        busy_timeout_ms=storage.busy_timeout_ms,
        pool_min=storage.pool_min,
        pool_max=storage.pool_max,
        read_mmap_mb=storage.read_mmap_mb,
    )


def build_app(
    settings: Settings,
    *,
    credentials: Mapping[str, AppCredentials] | None = None,
    registry: HandlerRegistry | None = None,
    clock: Clock = utc_now,
) -> web.Application:
    """The whole service. Key material is loaded (and checked) here, before anything listens."""
    redact_parser_errors()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app[CREDENTIALS] = dict(credentials or load_credentials(settings, clock()))
    app[REFUSALS] = RefusalCounter()
    app[TOKENS] = TokenRing(settings.tokens)
    app[METRICS] = Metrics()
    contexts = [_store_context(registry or default_registry(), clock), events_context]
    if settings.server.intake_workers:
        contexts.append(_intake_workers_context)
    if settings.server.intake_workers or settings.outbox.call_processes:
        app.on_shutdown.append(_hold_restarts)
    contexts.append(events_api_context(clock))
    contexts.append(outbound_context(clock))
    contexts.append(delivery_context(clock))
    app.cleanup_ctx.append(_in_order(contexts))
    setup_notifications(app)
    setup_api_routes(app)
    app.router.add_get("/openapi.json", serve_openapi)
    app.router.add_get("/metrics", serve_metrics)
    setup_health_routes(app)
    add_console(app, settings, clock)
    return app


AppContext = Callable[[web.Application], AsyncIterator[None]]


def _in_order(contexts: list[AppContext]) -> AppContext:
    """Open the contexts in order and close them in reverse, as one: when one fails to open,
    those already open are closed before the error propagates. (aiohttp runs no cleanup at all
    when start-up fails, so an open store would keep the process from exiting.)"""

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for context in contexts:
                await stack.enter_async_context(contextlib.asynccontextmanager(context)(app))
            yield

    return lifespan


def _store_context(
    registry: HandlerRegistry, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def store_context(app: web.Application) -> AsyncIterator[None]:
        store = await open_configured_store(app[SETTINGS].storage)
        tasks: list[asyncio.Task[None]] = []
        try:
            app[STORE] = store
            store.observe_commits(app[METRICS].observe_commit)
            credentials: dict[str, AppCredentials] = app[CREDENTIALS]
            app[STORE_SINK] = sink = StoreSink(store)
            app[METRICS].count_notifications(lambda: sink.accepted, app[REFUSALS].totals)
            app[GATEWAY] = NotificationGateway(
                credentials, app[STORE_SINK], registry, app[REFUSALS], clock
            )
            app[LEDGER] = ConsentLedger(store, TemplateRegistry(app[SETTINGS].apps), clock)
            tasks.append(asyncio.create_task(_flush_refusals_forever(app, clock)))
            if app[SETTINGS].retention.notifications_days > 0:
                tasks.append(asyncio.create_task(_prune_forever(app, clock)))
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app[REFUSALS].flush(store, clock())
            await store.close()

    return store_context


async def _intake_workers_context(app: web.Application) -> AsyncIterator[None]:
    """Started once the store is open, stopped before it closes (their last requests land)."""
    workers = IntakeWorkers(app[SETTINGS], logging.getLogger().getEffectiveLevel())
    await workers.start(app[STORE_SINK], app[REFUSALS], app[METRICS])
    app[INTAKE_WORKERS] = workers
    watch_pool(app, "intake_workers", PoolCheck(workers, required=True))
    try:
        yield
    finally:
        await workers.stop()


async def _hold_restarts(app: web.Application) -> None:
    """From the start of shutdown a worker that exits (a service manager may signal the whole
    group) is not started again."""
    for workers in (app.get(INTAKE_WORKERS), app.get(CALL_WORKERS), app.get(PUSH_WORKERS)):
        if workers is not None:
            workers.hold_restarts()


async def prune_once(app: web.Application, clock: Clock) -> int:
    """Drop notifications older than the retention window (a replay of one is then stale)."""
    days = app[SETTINGS].retention.notifications_days
    deleted = await app[STORE].prune_notifications(clock() - timedelta(days=days))
    if deleted:
        logger.info("pruned %d notification(s) older than %s days", deleted, days)
    return deleted


async def _prune_forever(app: web.Application, clock: Clock) -> None:
    while True:
        try:
            await prune_once(app, clock)
        except StorageError as error:
            logger.warning("pruning skipped: %s", error)
        await asyncio.sleep(app[SETTINGS].retention.prune_interval_seconds)


async def _flush_refusals_forever(app: web.Application, clock: Clock) -> None:
    interval = app[SETTINGS].server.refusal_flush_seconds
    while True:
        await asyncio.sleep(interval)
        await app[REFUSALS].flush(app[STORE], clock())
