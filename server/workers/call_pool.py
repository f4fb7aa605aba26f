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

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.credentials import AppCredentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallResult
from server.runtime.log_format import active_log_format
from server.settings import Settings
from server.workers.call_connection import LOST, NO_ANSWER, CallConnection
from server.workers.call_messages import (
    CallWorkerOrders,
    call_request,
)
from server.workers.orders import encode_orders
from server.workers.supervision import (
    WorkerStartFailed,
    next_restart_delay,
    terminate,
    worker_settings,
)
from server.workers.wire import (
    RelayError,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
# A worker's own timeout ends each call; this margin covers the hop back to the primary.
ANSWER_MARGIN_SECONDS = 5.0


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    connection: CallConnection


class CallWorkers:
    """Makes gateway calls in worker processes; an ``OpenApiCaller`` like ``AlipayClient``."""

    def __init__(
        self,
        settings: Settings,
        local: AlipayClient,
        clock: Callable[[], datetime],
        log_level: int,
    ) -> None:
        self._settings = settings
        self._local = local
        self._clock = clock
        self._log_level = log_level
        self._count = settings.outbox.call_processes
        self._timeout = settings.outbox.call_timeout_seconds + ANSWER_MARGIN_SECONDS
        self._slots: list[_Worker | None] = [None] * self._count
        self._started: set[asyncio.subprocess.Process] = set()
        self._watchers: list[asyncio.Task[None]] = []
        self._turn = itertools.count()
        self._stopping = False
        self.restarts = 0
        self.calls = 0  # handed to a worker
        self.made_here = 0  # made in the primary: no worker serving, or one refused it
        self.lost = 0  # ended unknown: the worker died or did not answer in time

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._slots if w is not None and w.connection.serving]

    def hold_restarts(self) -> None:
        """Start no worker again from now on (shutdown has begun)."""
        self._stopping = True

    async def start(self) -> None:
        """Start every worker; raise ``WorkerStartFailed`` (leaving none running) if one cannot."""
        try:
            async with asyncio.TaskGroup() as group:
                spawning = [group.create_task(self._spawn()) for _ in range(self._count)]
        except BaseException as error:
            await self.stop()
            if isinstance(error, BaseExceptionGroup):
                raise error.exceptions[0] from None
            raise
        self._slots = [task.result() for task in spawning]
        self._watchers = [asyncio.create_task(self._watch(slot)) for slot in range(self._count)]
        logger.info("%d call worker(s) make the gateway calls", self._count)

    async def call(
        self, app: AppCredentials, method: str, biz_content: Mapping[str, Any]
    ) -> CallResult:
        worker = self._next_serving()
        if worker is not None:
            request = call_request(app.app_id, method, biz_content, self._clock())
            try:
                result = await worker.connection.call(request)
            except RelayError:  # a value the wire cannot carry (an integer past 64 bits)
                result = None  # nothing was sent: made here
            if result is not None:
                self.calls += 1
                if result.error in (LOST, NO_ANSWER):
                    self.lost += 1
                return result
        self.made_here += 1  # no worker serving, or it was stopping and did not make the call
        return await self._local.call(app, method, biz_content)

    def _next_serving(self) -> _Worker | None:
        for _ in range(self._count):
            worker = self._slots[next(self._turn) % self._count]
            if worker is not None and worker.connection.serving:
                return worker
        return None

    async def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        their_fd = theirs.fileno()  # the same number in the worker (pass_fds)
        loop = asyncio.get_running_loop()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.workers.call_process",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(their_fd,),
                start_new_session=True,  # a Ctrl-C reaches the primary, which stops its workers
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._started.add(process)
        connection: CallConnection | None = None
        try:
            _, connection = await loop.create_connection(
                lambda: CallConnection(self._timeout, on_broken=lambda: _kill(process)), sock=ours
            )
            assert process.stdin is not None
            settings = worker_settings(self._settings)  # no token, TOP secret or database URL
            orders = CallWorkerOrders(settings, their_fd, self._log_level, active_log_format())
            process.stdin.write(encode_orders(orders))
            with contextlib.suppress(ConnectionError):  # it died at once: reported below
                await process.stdin.drain()
            process.stdin.close()
            try:
                async with asyncio.timeout(START_TIMEOUT_SECONDS):
                    await connection.ready
            except (TimeoutError, ConnectionError):
                connection.close()
                await self._end(process)
                raise WorkerStartFailed(
                    f"call worker {process.pid} did not start (exit code {process.returncode}; "
                    "its reason is logged above)"
                ) from None
            return _Worker(process, connection)
        except BaseException:
            if connection is None:
                ours.close()
            else:
                connection.close()
            await self._end(process)
            raise

    async def _watch(self, slot: int) -> None:
        """Start a worker again whenever it dies, backing off while it keeps failing."""
        delay = 0.0
        started = time.monotonic()
        while True:
            worker = self._slots[slot]
            if worker is not None:
                code = await worker.process.wait()
                worker.connection.close()  # its calls in flight end UNKNOWN
                self._started.discard(worker.process)
                self._slots[slot] = None
                if self._stopping:
                    return
                delay = next_restart_delay(time.monotonic() - started, delay)
                logger.error(
                    "call worker %d exited with %s; starting another in %.0f s",
                    worker.process.pid,
                    code,
                    delay,
                )
            await asyncio.sleep(delay)
            try:
                self._slots[slot] = await self._spawn()
            except Exception as error:  # WorkerStartFailed, or the OS refused a process
                delay = next_restart_delay(0.0, delay)
                logger.error("call worker not started (%s); trying again in %.0f s", error, delay)
                continue
            started = time.monotonic()
            self.restarts += 1

    async def stop(self) -> None:
        """Stop every worker: each finishes the calls it is making (bounded by their timeout);
        calls from now on are made in the primary."""
        self._stopping = True
        for worker in self._slots:
            if worker is not None:
                worker.connection.drain()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await asyncio.gather(*(self._end(p) for p in list(self._started)))
        for worker in self._slots:
            if worker is not None:
                worker.connection.close()

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        await terminate(process, self._timeout + ANSWER_MARGIN_SECONDS, "call worker")
        self._started.discard(process)


CALL_WORKERS = web.AppKey("call_workers", CallWorkers)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class CallWorkerMetrics(Collector):
    """What ``/metrics`` shows of the call workers (registered when they start)."""

    def __init__(self, workers: CallWorkers) -> None:
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        workers = self._workers
        serving = GaugeMetricFamily("subgate_call_workers", "Call worker processes serving now.")
        serving.add_metric([], len(workers.pids))
        calls = CounterMetricFamily(
            "subgate_gateway_calls",
            "Classic-gateway calls by where they were made ([outbox] call_processes).",
            labels=["made_in"],
        )
        calls.add_metric(["worker"], workers.calls)
        calls.add_metric(["service"], workers.made_here)
        lost = CounterMetricFamily(
            "subgate_gateway_calls_lost",
            "Calls that ended unknown because their call worker died or did not answer in time.",
        )
        lost.add_metric([], workers.lost)
        restarts = CounterMetricFamily(
            "subgate_call_worker_restarts", "Call workers started again after one died."
        )
        restarts.add_metric([], workers.restarts)
        yield from (serving, calls, lost, restarts)
