"""How Subgate listens: aiohttp's runner, with every connection through
``server/web/connection_guard.py``.

``web.run_app`` and ``web.TCPSite`` hand each accepted connection straight to aiohttp, with no
place for the read deadlines and the connection cap; ``GuardedSite`` is the TCP site that puts a
``ConnectionGuards`` in front, and ``serve_app`` is ``run_app``'s loop around it for
``run.py serve``: the same signals (SIGINT and SIGTERM stop it gracefully), start-up errors
raised to the caller, and the same clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from server.appkeys import SETTINGS
from server.ops.metrics import METRICS
from server.web.connection_guard import ConnectionGuards
from server.web.lane import LANE

# How long the lane's connections have to answer the requests they have read when Subgate stops:
# aiohttp's runner gives its own connections the same (``AppRunner``'s ``shutdown_timeout``).
SHUTDOWN_SECONDS = 60.0


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through ``ConnectionGuards`` (as ``web.TCPSite``'s go
    straight to aiohttp), registered with its runner so that ``runner.cleanup()`` stops it first.
    ``cap``: ``server.runtime.open_files.connection_cap``; ``shutdown_seconds``: how long the
    lane's connections may take to answer at shutdown (the runner's ``shutdown_timeout``)."""

    __slots__ = ("_host", "_port", "_reuse_port", "_shutdown_seconds", "guards")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int | None,
        cap: int,
        *,
        reuse_port: bool = False,
        shutdown_seconds: float = SHUTDOWN_SECONDS,
    ) -> None:
        super().__init__(runner)
        assert runner.server is not None  # BaseSite has checked
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._shutdown_seconds = shutdown_seconds
        settings = runner.app[SETTINGS].server
        lane = runner.app.get(LANE)
        self.guards = ConnectionGuards(runner.server, runner.app[METRICS], settings, cap, lane)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, for port 0)."""
        sockets = getattr(self._server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else self._port or 0

    async def stop(self) -> None:
        """Stop listening, then close the lane's connections once they have answered what they
        read (aiohttp's runner does that for its own connections next)."""
        await super().stop()
        await self.guards.shutdown(self._shutdown_seconds)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guards.protocol,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )


def guarded_runner(app: web.Application, **options: Any) -> web.AppRunner:
    """An ``AppRunner`` with ``[server] keepalive_timeout_seconds``; serve it on ``GuardedSite``."""
    keepalive = app[SETTINGS].server.keepalive_timeout_seconds
    return web.AppRunner(app, keepalive_timeout=keepalive, **options)


def serve_app(
    app: web.Application, host: str, port: int, cap: int, loop: asyncio.AbstractEventLoop
) -> None:
    """Serve ``app`` on ``loop`` until SIGINT or SIGTERM; what ``web.run_app`` did, guarded."""
    main = loop.create_task(_serve(app, host, port, cap))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():  # a finished one (start-up failed) keeps its own traceback
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_the_rest(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(app: web.Application, host: str, port: int, cap: int) -> None:
    runner = guarded_runner(app, handle_signals=True)
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, cap).start()
        await asyncio.Event().wait()  # until cancelled: a signal ended the loop
    finally:
        await runner.cleanup()


def _cancel_the_rest(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
