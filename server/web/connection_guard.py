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
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import StreamReader, web

from server.errors import OverCapacity, RequestTimeout
from server.ops.client_cutoffs import ClientCutoffs
from server.ops.metrics import Metrics
from server.runtime.open_files import TURN_AWAY_RESERVE
from server.settings import ServerSettings
from server.web.closing import close_gently
from server.web.deadline import ReadDeadline
from server.web.first_request import FirstRequest
from server.web.lane import LaneRoute, LaneRoutes
from server.web.lane_connection import LaneConnection
from server.web.turned_away import TurnedAway

RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Phase(enum.Enum):
    WAITING = "waiting"  # for the first byte of a request (aiohttp's keep-alive timeout applies)
    HEADERS = "headers"
    BODY = "body"
    READ = "read"  # the request is read; its handler may still be running


class ConnectionGuards:
    """The connections of one listener: its protocol factory, its cap, its request-handler wrapper
    and, when the app has lane routes (``server/web/lane.py``), the connections served on them."""

    def __init__(
        self,
        server: web.Server,
        metrics: Metrics,
        settings: ServerSettings,
        cap: int,
        lane: LaneRoutes | None = None,
    ) -> None:
        self._server = server
        self._metrics = metrics
        self.read_timeout = settings.read_timeout_seconds
        self.keepalive_timeout = settings.keepalive_timeout_seconds
        self.max_body_bytes = settings.max_body_bytes
        self.max_connections = cap
        self._lane_prefixes = () if lane is None else lane.prefixes
        self._open = 0
        self._guards: dict[web.RequestHandler, ConnectionGuard] = {}
        self._off_aiohttp: set[FirstRequest | LaneConnection] = set()
        self._turning_away = 0
        server.request_handler = self._wrap(server.request_handler)
        metrics.clients.listener = self

    @property
    def cutoffs(self) -> ClientCutoffs:
        return self._metrics.clients

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def lane_connections(self) -> tuple[LaneConnection, ...]:
        return tuple(c for c in self._off_aiohttp if isinstance(c, LaneConnection))

    def protocol(self) -> asyncio.Protocol:
        """Called for each accepted connection: guarded, or turned away past the cap."""
        if self._open >= self.max_connections:
            self._metrics.error_answers.labels(code=OverCapacity.code).inc()
            self.cutoffs.turned_away(self.max_connections)
            return TurnedAway(self)
        self._open += 1
        if not self._lane_prefixes:
            return self.aiohttp_connection()
        first = FirstRequest(self, self._lane_prefixes)
        self._off_aiohttp.add(first)
        return first

    def aiohttp_connection(self) -> asyncio.Protocol:
        """A connection (already counted) served by aiohttp, guarded."""
        handler = self._server()
        guard = self._guards[handler] = ConnectionGuard(self, handler)
        return guard

    def lane_connection(self, route: LaneRoute) -> asyncio.Protocol:
        """A connection (already counted) served on the lane by ``route``."""
        lane = LaneConnection(self, route)
        self._off_aiohttp.add(lane)
        return lane

    def closed(self, handler: web.RequestHandler) -> None:
        self._guards.pop(handler, None)
        self._open -= 1

    def undecided_ended(self, connection: FirstRequest, counted: bool) -> None:
        self._off_aiohttp.discard(connection)
        self._open -= counted

    def lane_ended(self, connection: LaneConnection, counted: bool) -> None:
        self._off_aiohttp.discard(connection)
        self._open -= counted

    async def shutdown(self, seconds: float) -> None:
        """Close the connections aiohttp does not know of (aiohttp closes its own): each answers
        the requests it has read, within ``seconds``, then closes."""
        answering = [c.stop_reading() for c in list(self._off_aiohttp)]  # all at once, now
        closing = [done for done in answering if done is not None]
        if closing:
            await asyncio.wait(closing, timeout=seconds)
        for connection in list(self._off_aiohttp):
            connection.abort()

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
        self._deadline = ReadDeadline(self._loop, self._late)
        self._body: StreamReader | None = None
        self._handling = False
        self._next_started = False  # bytes of a next request came while this one was handled
        self._closing: asyncio.TimerHandle | None = None
        self.body_cut = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._handler.connection_made(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
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
        self._phase = phase
        self._deadline.start(self._guards.read_timeout)

    def _disarm(self) -> None:
        self._deadline.stop()

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
