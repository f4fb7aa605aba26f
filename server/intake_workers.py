"""The primary's side of ``[server] intake_workers``: start the workers, keep them running, stop
them in order.

The primary opens the relay (``server/relay.py``) on a Unix socket in a fresh 0700 directory,
starts each worker (``python -m server.intake_worker``, its orders on standard input) and waits
until every one listens on ``intake_port`` and has said so over the relay: start-up fails if one
cannot. A worker that dies later is started again after a back-off (1 s, doubling to 30 s) while
the others go on serving. On shutdown the workers get SIGTERM and finish their requests in
flight, which the primary still stores, before the relay and then the store close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from server.gateway import StoreSink
from server.metrics import Metrics
from server.refusals import RefusalCounter
from server.relay import RelayServer, WorkerOrders
from server.settings import Settings

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
RESTART_BACKOFF_SECONDS = (1.0, 30.0)


class WorkerStartFailed(RuntimeError):
    """A worker exited, or did not report ready, before it served."""


class IntakeWorkers:
    def __init__(self, settings: Settings, log_level: int) -> None:
        self._settings = settings
        self._log_level = log_level
        self._count = settings.server.intake_workers
        self._folder = Path(tempfile.mkdtemp(prefix="subgate-intake-"))
        self.relay_path = self._folder / "relay.sock"
        self._relay: RelayServer | None = None
        self._ready: dict[int, asyncio.Future[None]] = {}
        self._processes: list[asyncio.subprocess.Process | None] = [None] * self._count
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        """The workers serving now (a restarting slot is left out)."""
        return [p.pid for p in self._processes if p is not None and p.returncode is None]

    async def start(self, sink: StoreSink, refusals: RefusalCounter, metrics: Metrics) -> None:
        self._relay = RelayServer(sink, refusals, metrics, self._note_ready)
        await self._relay.start(self.relay_path)
        try:
            started = await asyncio.gather(*(self._spawn() for _ in range(self._count)))
        except BaseException:
            await self.stop()
            raise
        self._processes = list(started)
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
            sys.executable, "-m", "server.intake_worker", stdin=asyncio.subprocess.PIPE
        )
        ready = self._ready[process.pid] = asyncio.get_running_loop().create_future()
        try:
            assert process.stdin is not None
            orders = WorkerOrders(self._settings, self.relay_path, self._log_level)
            process.stdin.write(pickle.dumps(orders))
            await process.stdin.drain()
            process.stdin.close()
            exited = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait(
                {ready, exited}, timeout=START_TIMEOUT_SECONDS, return_when="FIRST_COMPLETED"
            )
            exited.cancel()
            if ready not in done:
                await _end(process)
                raise WorkerStartFailed(
                    f"intake worker {process.pid} did not start (exit code {process.returncode}); "
                    f"is {self._settings.server.host}:{self._settings.server.intake_port} free?"
                )
            return process
        except BaseException:
            await _end(process)
            raise
        finally:
            self._ready.pop(process.pid, None)

    async def _watch(self, slot: int) -> None:
        """Start a worker again whenever it dies, backing off while it keeps failing."""
        backoff = RESTART_BACKOFF_SECONDS[0]
        while True:
            process = self._processes[slot]
            if process is not None:
                code = await process.wait()
                if self._stopping:
                    return
                logger.error("intake worker %d exited with %s; starting another", process.pid, code)
                self._processes[slot] = None
            try:
                self._processes[slot] = await self._spawn()
                self.restarts += 1
                backoff = RESTART_BACKOFF_SECONDS[0]
            except WorkerStartFailed as error:
                logger.error("%s; trying again in %.0f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_SECONDS[1])

    async def stop(self) -> None:
        """SIGTERM every worker and wait for it (killing it after a grace period), then close
        the relay: requests the workers were finishing are still stored."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(_end(p) for p in self._processes if p is not None))
        if self._relay is not None:
            await self._relay.close()
        shutil.rmtree(self._folder, ignore_errors=True)


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.error("intake worker %d did not stop in time; killing it", process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


INTAKE_WORKERS = web.AppKey("intake_workers", IntakeWorkers)
