"""A pool of worker processes each reached over a private socket pair: what the call workers
(``[outbox] call_processes``) and the push workers (``[delivery] processes``) share.

Each worker is ``python -m <module>`` in a session of its own (a Ctrl-C reaches the primary,
which stops its workers), its orders on standard input (never in its argv or environment: they
may hold keys), one end of a socket pair passed as a file descriptor. It is serving once it has
said "ready" over the socket. A worker that dies is started again, at once if it had run a while,
else after a back-off (``supervision.next_restart_delay``), so that one failing on start cannot
spin; from the start of a shutdown none is. Stopping drains each worker (it gets nothing new),
then SIGTERMs it and waits for it to finish what it is doing, killing it after a grace period.

What a worker's socket carries, and what happens to the work in flight when it breaks, is the
pool's own (its ``Link``); this module only keeps the processes running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.workers.orders import encode_orders
from server.workers.supervision import WorkerStartFailed, next_restart_delay, terminate
from server.workers.worker_link import Link

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0


L = TypeVar("L", bound=Link)


@dataclass
class Spawned(Generic[L]):
    process: asyncio.subprocess.Process
    link: L


@dataclass(frozen=True)
class WorkerKind(Generic[L]):
    """What a pool starts: its name in logs, its module, its orders (given the worker's end of
    the socket), its link (given how to kill a worker that broke the protocol) and how long a
    stopping worker may take."""

    name: str
    module: str
    orders: Callable[[int], Any]
    link: Callable[[Callable[[], None]], L]
    stop_grace_seconds: float


class ProcessPool(Generic[L]):
    """``count`` workers of one kind, kept running from ``start`` to ``stop``."""

    def __init__(self, kind: WorkerKind[L], count: int) -> None:
        self._kind = kind
        self.count = count
        self.slots: list[Spawned[L] | None] = [None] * count
        self.started: set[asyncio.subprocess.Process] = set()  # every process not yet reaped
        self._watchers: list[asyncio.Task[None]] = []
        self._turn = itertools.count()
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        """The workers serving now (a restarting or stopping one is left out)."""
        return [w.process.pid for w in self.slots if w is not None and w.link.serving]

    def serving(self, slot: int) -> L | None:
        """The link of the worker in ``slot``, if it serves."""
        worker = self.slots[slot % self.count] if self.count else None
        return worker.link if worker is not None and worker.link.serving else None

    def next_serving(self) -> L | None:
        """A serving worker's link, taking turns; None when none serves."""
        for _ in range(self.count):
            link = self.serving(next(self._turn))
            if link is not None:
                return link
        return None

    def hold_restarts(self) -> None:
        """Start no worker again from now on (shutdown has begun)."""
        self._stopping = True

    async def start(self) -> None:
        """Start every worker; raise ``WorkerStartFailed`` (leaving none running) if one cannot."""
        try:
            async with asyncio.TaskGroup() as group:
                spawning = [group.create_task(self._spawn()) for _ in range(self.count)]
        except BaseException as error:
            await self.stop()
            if isinstance(error, BaseExceptionGroup):
                raise error.exceptions[0] from None
            raise
        self.slots = [task.result() for task in spawning]
        self._watchers = [asyncio.create_task(self._watch(slot)) for slot in range(self.count)]

    async def stop(self) -> None:
        """Drain every worker, then stop each once it has finished (bounded by the grace)."""
        self._stopping = True
        for worker in self.slots:
            if worker is not None:
                worker.link.drain()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await asyncio.gather(*(self._end(p) for p in list(self.started)))
        for worker in self.slots:
            if worker is not None:
                worker.link.close()

    async def _spawn(self) -> Spawned[L]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        their_fd = theirs.fileno()  # the same number in the worker (pass_fds)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self._kind.module,
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(their_fd,),
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.started.add(process)
        link: L | None = None
        try:
            _, link = await asyncio.get_running_loop().create_connection(
                lambda: self._kind.link(lambda: kill(process)), sock=ours
            )
            await self._hand_orders(process, link, their_fd)
            return Spawned(process, link)
        except BaseException:
            if link is None:
                ours.close()
            else:
                link.close()
            await self._end(process)
            raise

    async def _hand_orders(self, process: asyncio.subprocess.Process, link: L, fd: int) -> None:
        """Write the orders, wait for "ready"; ``WorkerStartFailed`` if it never comes."""
        assert process.stdin is not None
        process.stdin.write(encode_orders(self._kind.orders(fd)))
        with contextlib.suppress(ConnectionError):  # it died at once: reported below
            await process.stdin.drain()
        process.stdin.close()
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await link.ready
        except (TimeoutError, ConnectionError):
            link.close()
            await self._end(process)
            raise WorkerStartFailed(
                f"{self._kind.name} {process.pid} did not start (exit code "
                f"{process.returncode}; its reason is logged above)"
            ) from None

    async def _watch(self, slot: int) -> None:
        """Start a worker again whenever it dies, backing off while it keeps failing."""
        delay = 0.0
        started = time.monotonic()
        while True:
            worker = self.slots[slot]
            if worker is not None:
                code = await worker.process.wait()
                worker.link.close()  # what was in flight ends as the link says
                self.started.discard(worker.process)
                self.slots[slot] = None
                if self._stopping:
                    return
                delay = next_restart_delay(time.monotonic() - started, delay)
                logger.error(
                    "%s %d exited with %s; starting another in %.0f s",
                    self._kind.name,
                    worker.process.pid,
                    code,
                    delay,
                )
            await asyncio.sleep(delay)
            try:
                self.slots[slot] = await self._spawn()
            except Exception as error:  # WorkerStartFailed, or the OS refused a process
                delay = next_restart_delay(0.0, delay)
                logger.error(
                    "%s not started (%s); trying again in %.0f s", self._kind.name, error, delay
                )
                continue
            started = time.monotonic()
            self.restarts += 1

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        await terminate(process, self._kind.stop_grace_seconds, self._kind.name)
        self.started.discard(process)


def kill(process: asyncio.subprocess.Process) -> None:
    """Kill a worker that broke the protocol or stalled (its watcher starts another)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
