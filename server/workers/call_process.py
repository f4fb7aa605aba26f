"""A call worker (``[outbox] call_processes``): makes the gateway calls the primary hands it.

Started by the primary (``server/workers/call_pool.py``) with its orders on standard input and one
end of a socket pair. Each frame from the primary is one call: app id, method, biz_content and the
primary's clock reading; the worker signs, POSTs and verifies exactly as ``AlipayClient`` does in
the primary, and answers the classified result. It stops as every worker does
(``server/workers/primary_end.py``): a call refused while stopping is not made, and the primary
makes it itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from server.credentials import AppCredentials, load_credentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallOutcome, CallResult
from server.runtime.clock import utc_now
from server.workers.bootstrap import run_worker
from server.workers.call_messages import FRAME_LIMIT_BYTES, CallWorkerOrders, result_values
from server.workers.primary_end import PrimaryEnd, serve_until_stopped, stop_on_sigterm
from server.workers.wire import CALL_REQUESTS, RelayError, encode_frame, parse_payload

logger = logging.getLogger(__name__)


class _PrimaryConnection(PrimaryEnd):
    kind = "call worker"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: Mapping[str, AppCredentials],
        timeout: float,
    ) -> None:
        super().__init__(FRAME_LIMIT_BYTES)
        self._session = session
        self._credentials = credentials
        self._timeout = timeout

    def take(self, number: int, kind: str | bool, payload: Any) -> None:
        request = parse_payload(CALL_REQUESTS, kind, payload)
        if self.stopping:
            self.send((number, "refused", None))
        else:
            self.start(self._call(number, *request))

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
        self.send_frame(frame)


async def serve(orders: CallWorkerOrders) -> None:
    settings = orders.settings
    credentials = load_credentials(settings, utc_now())
    loop = asyncio.get_running_loop()
    stop = stop_on_sigterm()
    sock = socket.socket(fileno=orders.socket_fd)
    async with aiohttp.ClientSession() as session:
        timeout = settings.outbox.call_timeout_seconds
        _, primary = await loop.create_connection(
            lambda: _PrimaryConnection(session, credentials, timeout), sock=sock
        )
        await serve_until_stopped(primary, stop)


def main() -> int:
    # Keys that no longer load, a socket that is gone: exit 2.
    return run_worker("call worker", CallWorkerOrders, serve, (Exception,), logger)


if __name__ == "__main__":
    sys.exit(main())
