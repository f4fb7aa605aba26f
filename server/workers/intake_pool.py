"""The primary's side of ``[server] intake_workers``: start the workers, keep them running, stop
them in order.

The primary opens the relay (``server/workers/relay.py``) on a Unix socket in a fresh 0700
directory, starts each worker (``python -m server.workers.intake_process`` in a session of its own,
its orders on standard input) and waits until every one listens on ``intake_port`` and has said so
over the relay: start-up fails if one cannot. A worker that dies later is started again, at once if
it had run a while, else after a back-off (1 s doubling to 30 s) so that one failing on start or on
every request cannot spin; the others serve meanwhile. On shutdown the workers get SIGTERM and
finish the requests they are handling, which the primary still stores, before the relay and then the
store close.

The primary does not serve the intake port itself: it writes every worker's notifications, and
taking a share of the HTTP work as well made it the bottleneck (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from server.intake.gateway import StoreSink
from server.intake.refusals import RefusalCounter
from server.ops.metrics import Metrics
from server.runtime.log_format import active_log_format
from server.settings import Settings
from server.workers.orders import encode_orders
from server.workers.relay import RelayServer, WorkerOrders
from server.workers.relay_client import CALL_TIMEOUT_SECONDS
from server.workers.supervision import (
    WorkerStartFailed,
    next_restart_delay,
    terminate,
    worker_settings,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
# A stopping worker may wait up to CALL_TIMEOUT_SECONDS for its last answers: kill it only later.
STOP_TIMEOUT_SECONDS = CALL_TIMEOUT_SECONDS + 15.0


class IntakeWorkers:
    def __init__(self, settings: Settings, log_level: int) -> None:
        self._settings = settings
        self._log_level = log_level
        self._count = settings.server.intake_workers
        self._folder = Path(tempfile.mkdtemp(prefix="subgate-intake-"))
        self.relay_path = self._folder / "relay.sock"
        self._relay: RelayServer | None = None
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._started: set[asyncio.subprocess.Process] = set()  # every process not yet reaped
        self._serving: list[asyncio.subprocess.Process | None] = [None] * self._count
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        """The workers serving now (a restarting slot is left out)."""
        return [p.pid for p in self._serving if p is not None and p.returncode is None]

    def hold_restarts(self) -> None:
        """Start no worker again from now on (shutdown has begun)."""
        self._stopping = True

    async def start(self, sink: StoreSink, refusals: RefusalCounter, metrics: Metrics) -> None:
        """Start the relay and every worker; raise (leaving nothing running) if one cannot."""
        self._relay = RelayServer(
            sink,
            refusals,
            metrics,
            max_body_bytes=self._settings.server.max_body_bytes,
            is_worker=lambda pid: any(p.pid == pid for p in self._started),
            on_ready=self._note_ready,
        )
        try:
            await self._relay.start(self.relay_path)
            async with asyncio.TaskGroup() as group:
                spawning = [group.create_task(self._spawn()) for _ in range(self._count)]
            self._serving = [task.result() for task in spawning]
        except BaseException as error:
            await self.stop()
            if isinstance(error, BaseExceptionGroup):
                raise error.exceptions[0] from None
            raise
        self._watchers = [asyncio.create_task(self._watch(slot)) for slot in range(self._count)]
        logger.info(
            "%d intake worker(s) serving notifications on %s:%d",
            self._count,
            self._settings.server.host,
            self._settings.server.intake_port,
        )

    def _note_ready(self, pid: int) -> None:
        future = self._ready.get(pid)
        if future is not None and not future.done():
            future.set_result(None)

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.workers.intake_process",
            stdin=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C reaches the primary, which stops its workers
        )
        self._started.add(process)
        ready = self._ready[process.pid] = asyncio.get_running_loop().create_future()
        try:
            assert process.stdin is not None
            orders = WorkerOrders(
                worker_settings(self._settings),
                self.relay_path,
                self._log_level,
                active_log_format(),
            )
            process.stdin.write(encode_orders(orders))
            with contextlib.suppress(ConnectionError):  # it died at once: reported below
                await process.stdin.drain()
            process.stdin.close()
            exited = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait(
                {ready, exited}, timeout=START_TIMEOUT_SECONDS, return_when="FIRST_COMPLETED"
            )
            exited.cancel()
            if ready not in done:
                await self._end(process)
                raise WorkerStartFailed(
                    f"intake worker {process.pid} did not start (exit code {process.returncode}); "
                    f"is {self._settings.server.host}:{self._settings.server.intake_port} free?"
                )
            return process
        except BaseException:
            await self._end(process)
            raise
        finally:
            self._ready.pop(process.pid, None)

    async def _watch(self, slot: int) -> None:
        """Start a worker again whenever it dies, backing off while it keeps failing."""
        delay = 0.0
        started = time.monotonic()
        while True:
            process = self._serving[slot]
            if process is not None:
                code = await process.wait()
                self._started.discard(process)
                if self._stopping:
                    return
                delay = next_restart_delay(time.monotonic() - started, delay)
                logger.error(
                    "intake worker %d exited with %s; starting another in %.0f s",
                    process.pid,
                    code,
                    delay,
                )
                self._serving[slot] = None
            await asyncio.sleep(delay)
            try:
                self._serving[slot] = await self._spawn()
            except Exception as error:  # WorkerStartFailed, or the OS refused a process
                delay = next_restart_delay(0.0, delay)
                logger.error("intake worker not started (%s); trying again in %.0f s", error, delay)
                continue
            started = time.monotonic()
            self.restarts += 1

    async def stop(self) -> None:
        """SIGTERM every worker and wait for it (killing it after a grace period), then close
        the relay: requests the workers were finishing are still stored."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await asyncio.gather(*(self._end(p) for p in list(self._started)))
        if self._relay is not None:
            await self._relay.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        await terminate(process, STOP_TIMEOUT_SECONDS, "intake worker")
        self._started.discard(process)


INTAKE_WORKERS = web.AppKey("intake_workers", IntakeWorkers)
