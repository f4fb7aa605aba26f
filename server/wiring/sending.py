"""Everything that talks to the platforms, opened once per app in cleanup_ctx.

One shared aiohttp ClientSession and a client per protocol (classic Alipay, Alipay v3, TOP);
the send channels of the registry (``server.sending.channels.registry``); the sender; the
outbox worker and the optional periodic reconciliation, both as background tasks stopped
cleanly on shutdown; and, with ``[outbox] call_processes``, the call workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web

from server.api.keys import LEDGER, RECONCILER, SENDER
from server.appkeys import CREDENTIALS, SETTINGS, STORE
from server.consent.reconcile import Reconciler
from server.consent.templates import TemplateRegistry
from server.credentials import load_top_credentials
from server.ops.health import PoolCheck, watch_pool
from server.ops.metrics import METRICS
from server.platforms.alipay_classic import AlipayClient, OpenApiCaller
from server.platforms.alipay_v3 import AlipayV3Client
from server.platforms.top import TopClient
from server.runtime.clock import Clock
from server.sending.channels import mini_template
from server.sending.channels.base import ChannelPlatforms, PreparedSend
from server.sending.channels.registry import build_send_channels
from server.sending.outbox_worker import OutboxWorker
from server.sending.sender import MessageSender, PreSendCheck
from server.workers.call_pool import CALL_WORKER_METRICS, CALL_WORKERS, CallWorkers
from server.workers.pool_metrics import WorkerPoolMetrics
from storage.errors import StorageError

logger = logging.getLogger(__name__)


def outbound_context(clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            workers = _call_workers(app, session, clock)
            sender, reconciler = _sender(app, session, clock, workers)
            app[SENDER], app[RECONCILER] = sender, reconciler
            if workers is not None:
                await workers.start()  # raises, leaving none running, if one cannot start
            try:
                _watch(app, workers)
                async with _background(app, sender, reconciler, clock):
                    yield
            finally:
                if workers is not None:
                    await workers.stop()

    return context


def _call_workers(
    app: web.Application, session: aiohttp.ClientSession, clock: Clock
) -> CallWorkers | None:
    """The call workers ``[outbox] call_processes`` asks for (started last: nothing after can
    leak them), or none: calls are then made here."""
    settings = app[SETTINGS]
    if not settings.outbox.call_processes:
        return None
    local = AlipayClient(session, clock, settings.outbox.call_timeout_seconds)
    return CallWorkers(settings, local, clock, logging.getLogger().getEffectiveLevel())


def _sender(
    app: web.Application,
    session: aiohttp.ClientSession,
    clock: Clock,
    workers: CallWorkers | None,
) -> tuple[MessageSender, Reconciler]:
    settings, credentials = app[SETTINGS], app[CREDENTIALS]
    timeout = settings.outbox.call_timeout_seconds
    client: OpenApiCaller = (
        workers if workers is not None else AlipayClient(session, clock, timeout)
    )
    templates = TemplateRegistry(settings.apps)
    reconciler = Reconciler(app[STORE], client, credentials, templates, app[LEDGER], clock)
    platforms = ChannelPlatforms(
        client,
        AlipayV3Client(session, clock, timeout),
        TopClient(session, clock, timeout),
        credentials,
        load_top_credentials(settings),
    )
    channels = build_send_channels(platforms)
    verified_apps = frozenset(a.app_id for a in settings.apps if a.verify_with_platform)
    # Without an app that asks, a send reads nothing before its reservation.
    check = _check_with_platform(reconciler, verified_apps) if verified_apps else None
    sender = MessageSender(
        app[STORE], channels, credentials, templates, settings.outbox, clock, before_reserve=check
    )
    return sender, reconciler


def _check_with_platform(reconciler: Reconciler, verified_apps: frozenset[str]) -> PreSendCheck:
    """``verify_with_platform``: a template send asks Alipay's subscription query first."""

    async def check(app_id: str, channel: str, prepared: PreparedSend) -> None:
        if app_id in verified_apps and channel == mini_template.NAME:
            await reconciler.sync_user(app_id, prepared.user_id, [prepared.template_id])

    return check


def _watch(app: web.Application, workers: CallWorkers | None) -> None:
    if workers is None:
        return
    app[CALL_WORKERS] = workers
    # Informative only: with no call worker serving, calls are made here.
    watch_pool(app, "call_workers", PoolCheck(workers, required=False))
    app[METRICS].registry.register(WorkerPoolMetrics(CALL_WORKER_METRICS, workers.counts))


@contextlib.asynccontextmanager
async def _background(
    app: web.Application, sender: MessageSender, reconciler: Reconciler, clock: Clock
) -> AsyncIterator[None]:
    """The outbox worker and, when configured, periodic reconciliation, cancelled on exit."""
    settings = app[SETTINGS]
    jobs: list[Coroutine[Any, Any, None]] = [
        OutboxWorker(app[STORE], sender, settings.outbox, clock).run_forever()
    ]
    if settings.reconcile.interval_seconds > 0:
        jobs.append(_reconcile_forever(app, reconciler))
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _reconcile_forever(app: web.Application, reconciler: Reconciler) -> None:
    """Off by default: one ``sync_open_consents`` pass every ``interval_seconds``."""
    settings = app[SETTINGS].reconcile
    while True:
        await asyncio.sleep(settings.interval_seconds)
        try:
            await reconciler.sync_open_consents(settings.users_per_run)
        except StorageError as error:
            logger.warning("reconciliation skipped: %s", error)
