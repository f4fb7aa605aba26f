"""Everything that talks to the platforms, opened once per app in cleanup_ctx.

One shared aiohttp ClientSession and a client per protocol (classic Alipay, Alipay v3, TOP);
the channel registry (``mini_template``, ``life_label``, ``jym_push``, ``workcore_batch``); the
sender; the outbox worker and the optional periodic reconciliation, both as background tasks
stopped cleanly on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

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
from server.sending.channels.base import Channel, PreparedSend
from server.sending.channels.jym_push import JymPushChannel
from server.sending.channels.life_label import LifeLabelChannel
from server.sending.channels.mini_template import MiniTemplateChannel
from server.sending.channels.workcore_batch import WorkcoreBatchChannel
from server.sending.outbox_worker import OutboxWorker
from server.sending.sender import MessageSender
from server.workers.call_pool import CALL_WORKERS, CallWorkerMetrics, CallWorkers
from storage.errors import StorageError
from storage.models import Channel as ChannelName

logger = logging.getLogger(__name__)


def outbound_context(
    clock: Clock,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        async with aiohttp.ClientSession() as session:
            timeout = settings.outbox.call_timeout_seconds
            local = AlipayClient(session, clock, timeout)
            client: OpenApiCaller = local
            workers: CallWorkers | None = None
            if settings.outbox.call_processes:  # started last, below: nothing after can leak them
                level = logging.getLogger().getEffectiveLevel()
                client = workers = CallWorkers(settings, local, clock, level)
            v3_client = AlipayV3Client(session, clock, timeout)
            top_client = TopClient(session, clock, timeout)
            top_apps = load_top_credentials(settings)
            templates = TemplateRegistry(settings.apps)
            credentials = app[CREDENTIALS]
            reconciler = Reconciler(app[STORE], client, credentials, templates, app[LEDGER], clock)
            channels: dict[str, Channel] = {
                ChannelName.MINI_TEMPLATE: MiniTemplateChannel(client),
                LifeLabelChannel.name: LifeLabelChannel(v3_client, credentials),
                ChannelName.JYM_PUSH: JymPushChannel(top_client, top_apps),
                WorkcoreBatchChannel.name: WorkcoreBatchChannel(top_client, top_apps),
            }
            verified_apps = {a.app_id for a in settings.apps if a.verify_with_platform}

            async def check_with_platform(
                app_id: str, channel: str, prepared: PreparedSend
            ) -> None:
                if app_id in verified_apps and channel == ChannelName.MINI_TEMPLATE:
                    await reconciler.sync_user(app_id, prepared.user_id, [prepared.template_id])

            sender = MessageSender(
                app[STORE],
                channels,
                credentials,
                templates,
                settings.outbox,
                clock,
                # Without an app that asks, a send reads nothing before its reservation.
                before_reserve=check_with_platform if verified_apps else None,
            )
            app[SENDER], app[RECONCILER] = sender, reconciler
            worker = OutboxWorker(app[STORE], sender, settings.outbox, clock)
            if workers is not None:
                await workers.start()  # raises, leaving none running, if one cannot start
            tasks: list[asyncio.Task[None]] = []
            try:
                if workers is not None:
                    app[CALL_WORKERS] = workers
                    # Informative only: with no call worker serving, calls are made here.
                    watch_pool(app, "call_workers", PoolCheck(workers, required=False))
                    app[METRICS].registry.register(CallWorkerMetrics(workers))
                tasks.append(asyncio.create_task(worker.run_forever()))
                if settings.reconcile.interval_seconds > 0:
                    tasks.append(asyncio.create_task(_reconcile_forever(app, reconciler)))
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if workers is not None:
                    await workers.stop()

    return context


async def _reconcile_forever(app: web.Application, reconciler: Reconciler) -> None:
    """Off by default: one ``sync_open_consents`` pass every ``interval_seconds``."""
    settings = app[SETTINGS].reconcile
    while True:
        await asyncio.sleep(settings.interval_seconds)
        try:
            await reconciler.sync_open_consents(settings.users_per_run)
        except StorageError as error:
            logger.warning("reconciliation skipped: %s", error)
