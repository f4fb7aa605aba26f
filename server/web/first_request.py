"""A new connection until its first bytes say whose it is: the lane's or aiohttp's.

A connection whose first request line starts with a lane route's prefix (``POST
/alipay/notify`` followed by a space, ``?`` or ``/``; ``GET /v1/apps/`` and a byte more) is served
on the lane by that route (``server/web/lane_connection.py``); any other is handed, with the
bytes read so far, to aiohttp's guarded connection exactly as if it had had it from the start.
Deciding costs a comparison per prefix per connection, not per request. Until the first byte
the keep-alive timeout applies, as aiohttp applies it to a new connection; from the first byte,
the headers' read deadline.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from aiohttp.tcp_helpers import tcp_keepalive

from server.ops.client_cutoffs import ClientCutoffs
from server.web.deadline import ReadDeadline
from server.web.lane import LaneRoute

PREFIX_ENDS = frozenset(b" ?/")


class FirstRequestHost(Protocol):
    """What deciding needs from the listener (``ConnectionGuards``)."""

    read_timeout: float
    keepalive_timeout: float

    @property
    def cutoffs(self) -> ClientCutoffs: ...

    def aiohttp_connection(self) -> asyncio.Protocol: ...

    def lane_connection(self, route: LaneRoute) -> asyncio.Protocol: ...

    def undecided_ended(self, connection: FirstRequest, counted: bool) -> None: ...


class FirstRequest(asyncio.Protocol):
    def __init__(
        self, host: FirstRequestHost, prefixes: tuple[tuple[bytes, LaneRoute], ...]
    ) -> None:
        self._host = host
        self._prefixes = prefixes  # ``LaneRoutes.prefixes``
        self._transport: asyncio.Transport | None = None
        self._read = b""
        self._deadline = ReadDeadline(asyncio.get_running_loop(), self._late)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        tcp_keepalive(self._transport)
        self._deadline.start(self._host.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        if not self._read:
            self._deadline.start(self._host.read_timeout)
        self._read += data
        read = self._read
        for prefix, route in self._prefixes:
            if _begins(read, prefix):
                self._hand_over(self._host.lane_connection(route))
                return
        if not any(
            len(read) <= len(prefix) and prefix.startswith(read) for prefix, _ in self._prefixes
        ):
            self._hand_over(self._host.aiohttp_connection())
        # else not enough yet to tell

    def eof_received(self) -> bool | None:
        return None  # nothing to answer: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        self._host.undecided_ended(self, counted=True)

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        assert self._transport is not None
        self._deadline.cancel()
        self._host.undecided_ended(self, counted=False)
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(self._read)

    def _late(self) -> None:
        if self._read:
            self._host.cutoffs.timed_out("headers", self._host.read_timeout)
        if self._transport is not None:
            self._transport.close()

    def stop_reading(self) -> None:
        """No request has begun: nothing to answer."""
        self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _begins(read: bytes, prefix: bytes) -> bool:
    """Does the request line in ``read`` start with ``prefix``, followed by a byte that ends it
    (none needed after a prefix ending in ``/``)?"""
    if len(read) <= len(prefix) or not read.startswith(prefix):
        return False
    return prefix.endswith(b"/") or read[len(prefix)] in PREFIX_ENDS
