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
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.credentials import AppCredentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallOutcome, CallResult
from server.settings import Settings
from server.workers.orders import encode_orders
from server.workers.supervision import (
    WorkerStartFailed,
    next_restart_delay,
    terminate,
    worker_settings,
)
from server.workers.wire import (
    CALL_ANSWERS,
    CALL_RESULT,
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    micros,
    parse_payload,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
# A worker's own timeout ends each call; this margin covers the hop back to the primary.
ANSWER_MARGIN_SECONDS = 5.0
FRAME_LIMIT_BYTES = 16 * 1024 * 1024
LOST = "the call process was lost before it answered; the platform may have acted on the call"
NO_ANSWER = "the call process did not answer in time; the platform may have acted on the call"


@dataclass(frozen=True)
class CallWorkerOrders:
    """What the primary hands a call worker on its standard input."""

    settings: Settings
    socket_fd: int
    log_level: int


def call_request(
    app_id: str, method: str, biz_content: Mapping[str, Any], now: datetime
) -> tuple[Any, ...]:
    """The shape of ``CALL_REQUESTS`` (``server/workers/wire.py``): ``biz_content`` as the JSON
    it is signed as (a str enum becomes its value), the time as microseconds."""
    plain = json.loads(json.dumps(biz_content, ensure_ascii=False))
    return (app_id, method, plain, micros(now))


def result_values(result: CallResult) -> tuple[Any, ...]:
    return (
        result.outcome.value,
        result.code,
        result.msg,
        result.sub_code,
        result.sub_msg,
        result.error,
        dict(result.node),
    )


def result_from_values(values: object) -> CallResult:
    """A worker's answer, checked field by field: anything else is not the protocol."""
    return _result(CALL_RESULT(values))


def _result(fields: dict[str, Any]) -> CallResult:
    """A ``CALL_RESULT`` already checked, whose outcome must be one of ours."""
    outcome = fields.pop("outcome")
    try:
        kind = CallOutcome(outcome)
    except ValueError:
        raise RelayError(f"unknown call outcome {outcome!r}") from None
    return CallResult(kind, **fields)


class _Connection(asyncio.Protocol):
    """The primary's end of one worker's socket: numbered calls, answers matched by number.

    A worker that breaks the protocol is broken at once (``on_broken`` kills it, so that it is
    replaced) and its calls in flight end ``UNKNOWN``. One that leaves a call unanswered past its
    deadline gets no new call and is broken once its other calls have had their own deadlines.
    A worker that got SIGTERM says "stopping": it gets no new call, and its socket closes once
    its calls are answered."""

    def __init__(self, answer_within: float, on_broken: Callable[[], None]) -> None:
        self._answer_within = answer_within
        self._on_broken = on_broken
        self._transport: asyncio.Transport | None = None
        self._out: CoalescedWriter | None = None  # the calls of one turn share a write
        self._reader = FrameReader(FRAME_LIMIT_BYTES)
        self._pending: dict[int, asyncio.Future[CallResult | None]] = {}
        self._abandoned: set[int] = set()  # calls nobody waits for any more (a cancelled caller)
        self._numbers = itertools.count(1)
        self._draining = False
        self._timed_out = False
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = CoalescedWriter(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("the call worker closed its socket"))
        for future in self._pending.values():
            if not future.done():
                future.set_result(CallResult(CallOutcome.UNKNOWN, error=LOST))
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                self._answer(number, kind, parse_payload(CALL_ANSWERS, kind, payload))
        except RelayError as error:
            logger.error("call worker broke the protocol (%s); replacing it", error)
            self._break()

    def _answer(self, number: int, kind: object, payload: Any) -> None:
        """One message, its payload already of the shape ``CALL_ANSWERS`` gives its kind."""
        if kind == "ready" and not self.ready.done():
            self.ready.set_result(payload)
            return
        if number in self._abandoned:
            self._abandoned.discard(number)  # its caller stopped waiting (shutdown): drop it
            return
        if kind == "stopping":  # the worker got SIGTERM: route nothing more to it
            self.drain()
            self._close_when_idle()
            return
        if kind not in ("answer", "refused") or number not in self._pending:
            raise RelayError(f"unexpected frame {kind!r} for call {number!r}")
        # "refused": a stopping worker did not make the call; None tells the caller so.
        result = _result(payload) if kind == "answer" else None
        future = self._pending[number]
        if not future.done():
            future.set_result(result)

    @property
    def serving(self) -> bool:
        return (
            self.ready.done()
            and not self.ready.cancelled()
            and not self.ready.exception()
            and not self.lost.is_set()
            and not self._draining
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def drain(self) -> None:
        """Give this worker no new call (it is being stopped)."""
        self._draining = True

    def _close_when_idle(self) -> None:
        """A draining worker's socket closes once no call waits on it (the worker exits then)."""
        if self._draining and not self._pending:
            self.close()

    async def call(self, request: tuple[Any, ...]) -> CallResult | None:
        """The worker's result; None if it did not make the call (it was stopping)."""
        assert self._out is not None
        number = next(self._numbers)
        frame = encode_frame((number, "call", request))
        future: asyncio.Future[CallResult | None] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        self._out.send(frame)
        try:
            async with asyncio.timeout(self._answer_within):
                return await asyncio.shield(future)
        except TimeoutError:
            if future.done():  # the answer came in the same turn as the deadline
                return future.result()
            # Stuck, or this loop stalled: give it nothing more, and replace it once its other
            # calls have had their own deadlines (so an answer already on its way still counts).
            logger.error("call worker left call %d unanswered; replacing it", number)
            self._timed_out = True
            self.drain()
            return CallResult(CallOutcome.UNKNOWN, error=NO_ANSWER)
        finally:
            self._pending.pop(number, None)
            if not future.done():  # timed out, or its caller was cancelled: drop a late answer
                self._abandoned.add(number)
            if self._timed_out and not self._pending:
                self._break()
            else:
                self._close_when_idle()

    def _break(self) -> None:
        self.close()
        self._on_broken()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    connection: _Connection


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
        connection: _Connection | None = None
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(self._timeout, on_broken=lambda: _kill(process)), sock=ours
            )
            assert process.stdin is not None
            settings = worker_settings(self._settings)  # no token, TOP secret or database URL
            orders = CallWorkerOrders(settings, their_fd, self._log_level)
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
