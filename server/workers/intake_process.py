"""An intake worker: ``python -m server.workers.intake_process``, started by the primary, never by
hand.

It serves ``POST /alipay/notify[/{app_id}]`` (and ``GET /healthz``) on ``[server] intake_port``,
which every worker binds with SO_REUSEPORT so the kernel spreads connections across them. It
parses and verifies on its own core exactly as the primary does (the same ``NotificationGateway``)
and relays each verified notification to the primary, which stores it; the answer waits for
that commit. It reads its settings from standard input (JSON the primary writes: the
settings hold secrets, so never argv or the environment).

It stops on SIGTERM from the primary, or by itself when the relay closes (the primary is gone):
it finishes the requests it is handling, relays its last counts and exits. It runs in a session
of its own and ignores SIGINT: a Ctrl-C is for the primary, which stops its workers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from server.appkeys import SETTINGS
from server.credentials import load_credentials
from server.intake.default_handlers import default_registry
from server.intake.gateway import NotificationGateway
from server.intake.keys import GATEWAY, REFUSALS
from server.intake.lane_route import setup_notifications
from server.intake.refusals import RefusalCounter
from server.ops.client_cutoffs import relay_cutoffs
from server.ops.health import healthz
from server.ops.metrics import METRICS, Metrics
from server.runtime.clock import utc_now
from server.runtime.garbage_collector import settle_garbage_collector
from server.runtime.log_redaction import redact_parser_errors
from server.runtime.open_files import connection_cap, raise_open_file_limit
from server.settings import Settings
from server.web.error_middleware import error_middleware
from server.web.serving import GuardedSite, guarded_runner
from server.workers.bootstrap import run_worker
from server.workers.relay import WorkerOrders
from server.workers.relay_client import CALL_TIMEOUT_SECONDS, RelayClient
from storage.errors import StorageError, StorageUnavailable

logger = logging.getLogger(__name__)


def build_intake_app(settings: Settings, relay: RelayClient) -> web.Application:
    """The notification routes and /healthz, keeping what they verify through the relay."""
    redact_parser_errors()
    refusals = RefusalCounter()
    credentials = load_credentials(settings, utc_now())
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[REFUSALS] = refusals
    app[GATEWAY] = NotificationGateway(credentials, relay, default_registry(), refusals, utc_now)
    setup_notifications(app)
    app.router.add_get("/healthz", healthz)
    return app


async def start_intake_site(app: web.Application, settings: Settings) -> web.AppRunner:
    """Serve ``app`` on the intake port, shared with the other workers (SO_REUSEPORT)."""
    # Requests in flight at shutdown may wait for the primary's answer up to the relay's timeout.
    runner = guarded_runner(app, handle_signals=False, shutdown_timeout=CALL_TIMEOUT_SECONDS + 5)
    await runner.setup()
    cap = connection_cap(settings, raise_open_file_limit())  # guarded as the primary's port is
    host, port = settings.server.host, settings.server.intake_port
    site = GuardedSite(
        runner, host, port, cap, reuse_port=True, shutdown_seconds=CALL_TIMEOUT_SECONDS + 5
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class CountRelay:
    """Sends the worker's refusal and error-answer counts to the primary, as deltas."""

    def __init__(self, app: web.Application, relay: RelayClient) -> None:
        self._app = app
        self._relay = relay
        self._sent_errors: dict[str, float] = {}

    async def flush(self) -> None:
        await self._app[REFUSALS].flush(self._relay, utc_now())
        await relay_cutoffs(self._app[METRICS].clients, self._relay)
        totals = _error_answer_totals(self._app[METRICS])
        deltas = {
            code: n - self._sent_errors.get(code, 0.0)
            for code, n in totals.items()
            if n > self._sent_errors.get(code, 0.0)
        }
        if deltas:
            try:
                await self._relay.add_error_answers(deltas)
            except StorageError as error:
                logger.warning("error-answer counts not relayed: %s", error)
                return
            self._sent_errors.update({code: totals[code] for code in deltas})

    async def forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()


def _error_answer_totals(metrics: Metrics) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in metrics.registry.collect():
        if family.name == "subgate_error_answers":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["code"]] = sample.value
    return totals


async def serve(orders: WorkerOrders) -> None:
    settings = orders.settings
    relay = await RelayClient.connect(orders.relay_path)
    app = build_intake_app(settings, relay)
    counts = CountRelay(app, relay)
    runner = await start_intake_site(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    settle_garbage_collector()
    await relay.ready(os.getpid())
    flusher = asyncio.create_task(counts.forever(settings.server.refusal_flush_seconds))
    lost = asyncio.create_task(relay.lost.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if relay.lost.is_set():
        logger.error("intake worker %d: the relay to the primary closed; stopping", os.getpid())
    for task in (flusher, lost, stopped):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await runner.cleanup()  # stop listening, finish the requests in flight
    await counts.flush()
    relay.close()


def main() -> int:
    # Refused by the primary, or the port is taken: exit 2.
    return run_worker("intake worker", WorkerOrders, serve, (StorageUnavailable, OSError), logger)


if __name__ == "__main__":
    sys.exit(main())
