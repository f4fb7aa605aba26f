"""``[outbox] call_processes``: Alipay gateway calls made by worker processes.

A gateway call is the most expensive thing Subgate does per message: an RSA-2048 signature (during
which the event loop waits; bench/README.md has its cost), the form encoding, aiohttp's client
request and the answer's verification. In one process all of it shares one GIL with the HTTP API
and the SQLite writer. With ``call_processes = N`` the primary hands each call of the classic
gateway (``alipay.open.app.mini.templatemessage.send``, the subscription queries) to one of N worker
processes (``python -m server.workers.call_process``) as plain values over a private socket pair
(the calls of one event-loop turn in one write, as the intake relay does), and gets the classified
``CallResult`` back. Consent checks, reservations and outcomes stay in the primary; a worker holds
the app keys it signs with and nothing else (no API tokens, no TOP secrets, no database URL).

What can go wrong, and what it means for a message:

- no worker is serving (still starting again after a crash, or stopping): the call is made in
  the primary, exactly as without workers; a stopping worker answers a call it will not make
  "refused", and the primary makes it instead;
- a worker dies, breaks the protocol, or does not answer within the call timeout plus a margin,
  while calls are in flight: each of those calls ends ``UNKNOWN`` (the platform may have acted on
  it), so its message is never retried automatically and can never be delivered twice; a worker
  that broke the protocol or left a call unanswered is killed;
- a worker that died (or was killed) is started again, at once if it had run a while, else after
  a back-off; from the start of a shutdown none is.

A worker loads the app keys from the settings when it starts, as the primary did: after rotating
key files, restart the service rather than let a restarted worker load keys the primary has not.

The request's timestamp comes from the primary's clock, so a worker signs what the primary
would have signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from server.credentials import AppCredentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallResult
from server.runtime.log_format import active_log_format
from server.settings import Settings
from server.workers.call_connection import LOST, NO_ANSWER, CallConnection
from server.workers.call_messages import CallWorkerOrders, call_request
from server.workers.pool_metrics import WorkerCounts, WorkerMetricNames
from server.workers.process_pool import ProcessPool, WorkerKind
from server.workers.supervision import worker_settings
from server.workers.wire import RelayError

logger = logging.getLogger(__name__)

# A worker's own timeout ends each call; this margin covers the hop back to the primary.
ANSWER_MARGIN_SECONDS = 5.0


class CallWorkers:
    """Makes gateway calls in worker processes; an ``OpenApiCaller`` like ``AlipayClient``."""

    def __init__(
        self,
        settings: Settings,
        local: AlipayClient,
        clock: Callable[[], datetime],
        log_level: int,
    ) -> None:
        self._local = local
        self._clock = clock
        timeout = settings.outbox.call_timeout_seconds + ANSWER_MARGIN_SECONDS
        orders_settings = worker_settings(settings)  # no token, TOP secret or database URL
        kind = WorkerKind(
            name="call worker",
            module="server.workers.call_process",
            orders=lambda fd: CallWorkerOrders(orders_settings, fd, log_level, active_log_format()),
            link=lambda on_broken: CallConnection(timeout, on_broken),
            stop_grace_seconds=timeout + ANSWER_MARGIN_SECONDS,
        )
        self.pool = ProcessPool(kind, settings.outbox.call_processes)
        self.calls = 0  # handed to a worker
        self.made_here = 0  # made in the primary: no worker serving, or one refused it
        self.lost = 0  # ended unknown: the worker died or did not answer in time

    @property
    def pids(self) -> list[int]:
        return self.pool.pids

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def hold_restarts(self) -> None:
        """Start no worker again from now on (shutdown has begun)."""
        self.pool.hold_restarts()

    async def start(self) -> None:
        """Start every worker; raise ``WorkerStartFailed`` (leaving none running) if one cannot."""
        await self.pool.start()
        logger.info("%d call worker(s) make the gateway calls", self.pool.count)

    async def call(
        self, app: AppCredentials, method: str, biz_content: Mapping[str, Any]
    ) -> CallResult:
        connection = self.pool.next_serving()
        if connection is not None:
            request = call_request(app.app_id, method, biz_content, self._clock())
            try:
                result = await connection.call(request)
            except RelayError:  # a value the wire cannot carry (an integer past 64 bits)
                result = None  # nothing was sent: made here
            if result is not None:
                self.calls += 1
                if result.error in (LOST, NO_ANSWER):
                    self.lost += 1
                return result
        self.made_here += 1  # no worker serving, or it was stopping and did not make the call
        return await self._local.call(app, method, biz_content)

    def counts(self) -> WorkerCounts:
        """What /metrics shows (``CALL_WORKER_METRICS``)."""
        return WorkerCounts(len(self.pids), self.calls, self.made_here, self.lost, self.restarts)

    async def stop(self) -> None:
        """Stop every worker: each finishes the calls it is making (bounded by their timeout);
        calls from now on are made in the primary."""
        await self.pool.stop()


CALL_WORKERS = web.AppKey("call_workers", CallWorkers)


CALL_WORKER_METRICS = WorkerMetricNames(
    "subgate_call_workers",
    "Call worker processes serving now.",
    "subgate_gateway_calls",
    "Classic-gateway calls by where they were made ([outbox] call_processes).",
    "subgate_gateway_calls_lost",
    "Calls that ended unknown because their call worker died or did not answer in time.",
    "subgate_call_worker_restarts",
    "Call workers started again after one died.",
)
