"""A call worker (``[outbox] call_processes``): makes the gateway calls the primary hands it.

Started by the primary (``server/workers/call_pool.py``) with its orders on standard input and one
end of a socket pair. Each frame from the primary is one call: app id, method, biz_content and the
primary's clock reading; the worker signs, POSTs and verifies exactly as ``AlipayClient`` does in
the primary, and answers the classified result. On SIGTERM it tells the primary it is stopping,
finishes the calls it is making and answers any new one "refused" (not made: the primary makes it
itself), then exits once the primary has closed its end; it exits at once when the primary's end
closes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import aiohttp

from server.credentials import AppCredentials, load_credentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallOutcome, CallResult
from server.runtime.clock import utc_now
from server.runtime.garbage_collector import settle_garbage_collector
from server.workers.bootstrap import run_worker
from server.workers.call_messages import FRAME_LIMIT_BYTES, CallWorkerOrders, result_values
from server.workers.wire import (
    CALL_REQUESTS,
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    parse_payload,
)

logger = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 5.0  # after its last answer, how long a stopping worker waits for the primary


class _PrimaryConnection(asyncio.Protocol):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: Mapping[str, AppCredentials],
        timeout: float,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._timeout = timeout
        self._reader = FrameReader(FRAME_LIMIT_BYTES)
        self._out: CoalescedWriter | None = None  # the answers of one turn share a write
        self.calls: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self.stopping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport
        self._out = CoalescedWriter(cast(asyncio.Transport, transport))
        self._send((0, "ready", os.getpid()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        try:
            for number, kind, payload in self._reader.feed(data):
                request = parse_payload(CALL_REQUESTS, kind, payload)
                if self.stopping:
                    self._send((number, "refused", None))
                    continue
                task = asyncio.create_task(self._call(number, *request))
                self.calls.add(task)
                task.add_done_callback(self.calls.discard)
        except RelayError as error:
            logger.error("call worker %d: %s; closing", os.getpid(), error)
            self.close()

    async def _call(
        self, number: int, app_id: str, method: str, biz: dict[str, Any], when: datetime
    ) -> None:
        """Make one call of the shape ``CALL_REQUESTS`` gives, and answer its result."""
        app = self._credentials.get(app_id)
        if app is None:
            result = CallResult(CallOutcome.REJECTED, error=f"app {app_id!r} is not configured")
        else:
            try:
                client = AlipayClient(self._session, lambda: when, self._timeout)
                result = await client.call(app, method, biz)
            except Exception as error:  # a bug, after which the platform may have had the call
                logger.exception("call worker %d: call %r failed", os.getpid(), method)
                result = CallResult(CallOutcome.UNKNOWN, error=f"call worker failed: {error!r}")
        self._answer(number, result)

    def _answer(self, number: int, result: CallResult) -> None:
        """Answer a call made; an answer the wire cannot carry becomes unknown, never silence."""
        try:
            frame = encode_frame((number, "answer", result_values(result)))
        except RelayError as error:
            unknown = CallResult(CallOutcome.UNKNOWN, error=f"call worker: the answer {error}")
            frame = encode_frame((number, "answer", result_values(unknown)))
        if self._out is not None:
            self._out.send(frame)

    def send_stopping(self) -> None:
        self._send((0, "stopping", None))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._out is not None:
            self._out.send(encode_frame(message))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def serve(orders: CallWorkerOrders) -> None:
    settings = orders.settings
    credentials = load_credentials(settings, utc_now())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    sock = socket.socket(fileno=orders.socket_fd)
    async with aiohttp.ClientSession() as session:
        timeout = settings.outbox.call_timeout_seconds
        _, primary = await loop.create_connection(
            lambda: _PrimaryConnection(session, credentials, timeout), sock=sock
        )
        settle_garbage_collector()
        stopped = asyncio.create_task(stop.wait())
        closed = asyncio.create_task(primary.closed.wait())
        await asyncio.wait({stopped, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, closed):
            task.cancel()
        primary.stopping = True  # from now on a new call is answered "refused"
        if primary.closed.is_set():  # the primary is gone: nobody would get the answers
            for call in list(primary.calls):
                call.cancel()
        else:  # the primary routes nothing more here and closes its end once answered
            primary.send_stopping()
        while primary.calls:
            await asyncio.gather(*list(primary.calls), return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # a call already on its way is still refused
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await primary.closed.wait()
        primary.close()


def main() -> int:
    # Keys that no longer load, a socket that is gone: exit 2.
    return run_worker("call worker", CallWorkerOrders, serve, (Exception,), logger)


if __name__ == "__main__":
    sys.exit(main())
