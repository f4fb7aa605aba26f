"""Slow, idle and surplus clients: read deadlines and a connection cap in front of aiohttp's server.

aiohttp closes a connection left idle past its keep-alive timeout (``keepalive_timeout_seconds``
here), but bounds neither how long a request's headers or body may take to arrive nor how many
connections are open: a client sending a byte now and then holds its connection, and a file
descriptor, for as long as it likes, and enough of them exhaust the process's descriptors.

So every accepted connection is served through a ``ConnectionGuard``, a protocol in front of
aiohttp's own ``RequestHandler`` that passes everything through and keeps one timer:

- from the first byte of a request until aiohttp hands the request on, its headers have
  ``read_timeout_seconds``; past that the connection is closed (there is no request to answer);
- from then until the last byte of its body, another ``read_timeout_seconds``; past that the body
  fails with ``RequestTimeout``, so a handler still reading it answers 408 ``request_timeout``;
  then (or at once, when its handler had already answered) the connection is closed, gently:
  half-closed first, so that the client can read the answer (``close_gently``).

Past ``max_connections`` (server/runtime/open_files.py) a new connection is answered 503
``over_capacity`` at once and closed once the client has read that, so the connections in
progress keep their descriptors and are answered. Cut-offs are counted and logged by
``server.ops.client_cutoffs``. The guard learns where a request stands from the wrapper it puts
around the server's request handler (``web.Server.request_handler``) and from the body stream's
``on_eof``; it reads nothing of aiohttp's private state.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import StreamReader, web

from server.errors import OverCapacity, RequestTimeout, error_body
from server.ops.client_cutoffs import ClientCutoffs
from server.ops.metrics import Metrics
from server.runtime.open_files import TURN_AWAY_RESERVE
from server.web.error_middleware import ERROR_HEADER

RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# How long a client has to read our last answer once we have half-closed: closing at once, with
# its bytes still arriving unread, would make the kernel reset the connection, and a reset can
# discard the answer before the client reads it.
LINGER_SECONDS = 1.0
# A timer may run a little before its time (the loop's clock resolution): that close is on time.
DEADLINE_SLACK_SECONDS = 0.001


class Phase(enum.Enum):
    WAITING = "waiting"  # for the first byte of a request (aiohttp's keep-alive timeout applies)
    HEADERS = "headers"
    BODY = "body"
    READ = "read"  # the request is read; its handler may still be running


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


class ConnectionGuards:
    """The guards of one listener: its protocol factory, its cap and its request-handler wrapper."""

    def __init__(self, server: web.Server, metrics: Metrics, read_timeout: float, cap: int) -> None:
        self._server = server
        self._metrics = metrics
        self.read_timeout = read_timeout
        self.max_connections = cap
        self._guards: dict[web.RequestHandler, ConnectionGuard] = {}
        self._turning_away = 0
        server.request_handler = self._wrap(server.request_handler)
        metrics.clients.listener = self

    @property
    def cutoffs(self) -> ClientCutoffs:
        return self._metrics.clients

    @property
    def open_connections(self) -> int:
        return len(self._guards)

    def protocol(self) -> asyncio.Protocol:
        """Called for each accepted connection: guarded, or turned away past the cap."""
        if len(self._guards) >= self.max_connections:
            self._metrics.error_answers.labels(code=OverCapacity.code).inc()
            self.cutoffs.turned_away(self.max_connections)
            return TurnedAway(self)
        handler = self._server()
        guard = self._guards[handler] = ConnectionGuard(self, handler)
        return guard

    def closed(self, handler: web.RequestHandler) -> None:
        self._guards.pop(handler, None)

    def turning_away(self, change: int) -> bool:
        """Note a turned-away connection starting (+1) or ending (-1); False when too many are."""
        self._turning_away += change
        return self._turning_away <= TURN_AWAY_RESERVE

    def _wrap(self, handle: RequestHandlerFn) -> RequestHandlerFn:
        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            guard = self._guards.get(request.protocol)
            if guard is None:  # cannot happen: every connection of this server is guarded
                return await handle(request)
            guard.request_began(request.content)
            try:
                response = await handle(request)
            finally:
                guard.request_ended()
            if guard.body_cut:  # the rest of that body is still on its way: answer, then close
                await guard.answer_and_close(request, response)
            return response

        return guarded


class ConnectionGuard(asyncio.Protocol):
    """One connection: aiohttp's handler behind it, and the read deadline of its current request."""

    def __init__(self, guards: ConnectionGuards, handler: web.RequestHandler) -> None:
        self._guards = guards
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._phase = Phase.WAITING
        self._deadline: float | None = None  # loop time by which the current phase must end
        self._timer: asyncio.TimerHandle | None = None  # set for the deadline or before it
        self._body: StreamReader | None = None
        self._handling = False
        self._next_started = False  # bytes of a next request came while this one was handled
        self._closing: asyncio.TimerHandle | None = None
        self.body_cut = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._handler.connection_made(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
        if self._closing is not None:
            self._closing.cancel()
        self._guards.closed(self._handler)
        self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.body_cut:
            return  # the rest of a body we stopped reading
        if self._phase is Phase.WAITING:
            self._start(Phase.HEADERS)
        elif self._phase is Phase.READ and self._handling:
            self._next_started = True
        self._handler.data_received(data)

    def eof_received(self) -> None:
        self._handler.eof_received()  # None: the transport closes, as it would without us

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def request_began(self, body: StreamReader) -> None:
        """aiohttp has read the headers and hands the request on: the body's deadline starts."""
        self._handling = True
        self._body = body
        self._disarm()
        self._phase = Phase.READ
        if not body.is_eof():
            self._start(Phase.BODY)
            body.on_eof(self._body_read)

    def request_ended(self) -> None:
        """Its handler returned (aiohttp writes the answer next)."""
        self._handling = False
        if self._phase is Phase.READ:
            self._phase = Phase.WAITING
            if self._next_started:  # its first bytes are in: its headers' deadline runs now
                self._next_started = False
                self._start(Phase.HEADERS)

    async def answer_and_close(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        """Write the answer to a request whose body was cut off, then close gently."""
        response.headers["Connection"] = "close"
        with contextlib.suppress(ConnectionError):  # the client left meanwhile
            await response.prepare(request)
            await response.write_eof()
        self._close_gently()

    def _close_gently(self) -> None:
        if self._transport is not None:
            self._closing = close_gently(self._transport)

    def _body_read(self) -> None:
        if self._phase is Phase.BODY:
            self._disarm()
            self._phase = Phase.READ if self._handling else Phase.WAITING

    def _start(self, phase: Phase) -> None:
        """Start ``phase``'s deadline. A request only moves the deadline (one float); the one
        timer of the connection, when it fires early, sets itself again for the deadline then
        current, so a keep-alive connection makes a timer per ``read_timeout``, not per request."""
        self._phase = phase
        self._deadline = self._loop.time() + self._guards.read_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check)

    def _disarm(self) -> None:
        self._deadline = None

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() + DEADLINE_SLACK_SECONDS < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self._deadline = None
        self._late()

    def _late(self) -> None:
        phase, self._phase = self._phase, Phase.READ  # nothing more of it will be read
        self._guards.cutoffs.timed_out(phase.value, self._guards.read_timeout)
        if phase is Phase.BODY and self._body is not None:
            self._cut_body(self._body)
        elif self._transport is not None:
            self._transport.close()

    def _cut_body(self, body: StreamReader) -> None:
        """Fail the body for a handler still reading it (it answers 408); else just close."""
        self.body_cut = True
        if self._handling:
            body.set_exception(RequestTimeout("the request body did not arrive in time"))
        body.feed_eof()  # nothing more will be fed to it; aiohttp stops waiting for the rest
        if not self._handling:  # it was answered already
            self._close_gently()


class TurnedAway(asyncio.Protocol):
    """A connection past the cap: answered 503, then closed once the client has read it.

    Closing at once, with the client's request unread, would make the kernel reset the
    connection, and a reset can discard the answer before the client reads it.
    """

    def __init__(self, guards: ConnectionGuards) -> None:
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


def close_gently(transport: asyncio.Transport) -> asyncio.TimerHandle | None:
    """Half-close now (the client reads our answer, then end of stream) and close fully after
    ``LINGER_SECONDS``, or sooner when the client closes its side (the transport then closes
    itself); what arrives meanwhile is read and dropped by the caller."""
    if transport.is_closing():
        return None
    transport.write_eof()
    return asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
