"""A connection past ``server.max_connections``: answered 503 ``over_capacity`` at once, closed once
the client has read that, so the connections in progress keep their descriptors."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol, cast

from server.errors import OverCapacity, error_body
from server.web.closing import close_gently
from server.web.error_middleware import ERROR_HEADER


class TurningAway(Protocol):
    def turning_away(self, change: int) -> bool: ...


def _over_capacity_answer() -> bytes:
    message = "too many connections are open; retry shortly"
    body = json.dumps(error_body(OverCapacity.code, message)).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{ERROR_HEADER}: {OverCapacity.code}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


OVER_CAPACITY_ANSWER = _over_capacity_answer()


class TurnedAway(asyncio.Protocol):
    """A connection past the cap: answered 503, then closed once the client has read it.

    Closing at once, with the client's request unread, would make the kernel reset the
    connection, and a reset can discard the answer before the client reads it.
    """

    def __init__(self, guards: TurningAway) -> None:
        self._guards = guards
        self._transport: asyncio.Transport | None = None
        self._grace: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(OVER_CAPACITY_ANSWER)
        if not self._guards.turning_away(+1):
            self._transport.close()  # too many are being turned away: no grace for this one
            return
        self._grace = close_gently(self._transport)

    def data_received(self, data: bytes) -> None:
        pass  # its request: read, so that closing sends no reset, and dropped

    def eof_received(self) -> bool:
        if self._transport is not None:
            self._transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._guards.turning_away(-1)
        if self._grace is not None:
            self._grace.cancel()
