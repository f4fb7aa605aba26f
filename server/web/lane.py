"""The lane: routes served on their own HTTP/1.1 protocol instead of aiohttp's request machinery.

Notification intake is one small POST answered with a few bytes, thousands of times a second, and
aiohttp's per-request machinery (request and response objects, routing, middleware, the payload
stream) cost about a third of the event loop's time per notification, more than everything
Subgate adds to verifying it (bench/README.md, "Intake results"); the single-key lookup, asked
before each message, is as small and as frequent (``server/api/subscription_lane.py``). A
``LaneRoute`` names the requests it takes by their request line; a connection whose first
request is one of them is parsed by httptools (llhttp, the parser of Node.js: the HTTP grammar
stays a well-kept library's) and answered by the route, with the same read deadlines, size
limit, connection cap and access log as aiohttp's connections
(``server/web/lane_connection.py``). Everything else, and every connection that starts with
anything else, is aiohttp's as before.

This module is the routes' side of that contract; ``LANE`` is where the wiring puts them.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import http
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from server.errors import RequestRefused
from server.ops.client_cutoffs import ClientCutoffs


@dataclass(frozen=True, slots=True)
class LaneTarget:
    """Which route a request matched (its template, for counts and logs) and the values the route
    read from its request line (path parameters, a query value), in the route's own order."""

    route: str
    parameters: tuple[str, ...] = ()

    @property
    def parameter(self) -> str | None:
        """The first of them, if any (a route with one path parameter)."""
        return self.parameters[0] if self.parameters else None


@dataclass(slots=True)
class LaneRequest:
    """One request taken on the lane: its head as received, then its whole body."""

    method: bytes
    url: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    target: LaneTarget
    body: bytes = b""
    _by_name: dict[bytes, bytes] | None = None  # lower-case name to first value, made once

    @property
    def encoded(self) -> bool:
        """The body has a Content-Encoding (gzip, ...): aiohttp's to decode, not the lane's."""
        encoding = self.header(b"content-encoding")
        return encoding is not None and encoding.strip().lower() != "identity"

    @property
    def expects_continue(self) -> bool:
        """``Expect: 100-continue`` from an HTTP/1.1 client; an HTTP/1.0 client's is ignored, as
        RFC 9110 asks (it would read the interim answer as the answer)."""
        expect = self.header(b"expect")
        return expect is not None and expect.lower() == "100-continue" and self.version != "1.0"

    def header(self, name: bytes) -> str | None:
        """The first value of the header ``name`` (lower case), decoded as Latin-1 (RFC 9110)."""
        found = self.raw_header(name)
        return None if found is None else found.decode("latin-1")

    def raw_header(self, name: bytes) -> bytes | None:
        """The first value of the header ``name`` (lower case), as received."""
        if self._by_name is None:  # each request asks for several: one pass over them all
            self._by_name = {}
            for key, value in self.headers:
                self._by_name.setdefault(key.lower(), value)
        return self._by_name.get(name)


@dataclass(frozen=True, slots=True)
class LaneAnswer:
    status: int
    content_type: str
    body: bytes
    headers: Sequence[tuple[str, str]] = field(default=())


class LaneRoute(Protocol):
    """What the lane asks of the routes it serves."""

    @property
    def request_line_prefixes(self) -> tuple[bytes, ...]:
        """Every request the route takes starts with one of these (``POST /alipay/notify``): a
        connection whose first bytes start with none is aiohttp's. A prefix that does not end
        in ``/`` must be followed by a space, ``?`` or ``/``."""
        ...

    def target(self, method: bytes, url: bytes) -> LaneTarget | None:
        """The route a request's method and URL match, or None: aiohttp answers it."""
        ...

    async def answer(self, request: LaneRequest) -> LaneAnswer:
        """The answer to a whole request; it never raises."""
        ...

    def refused(self, request: LaneRequest | None, error: RequestRefused) -> LaneAnswer:
        """The answer to a request the lane itself refuses (a body too large or too slow, a
        head that is not HTTP: then there is no ``request``)."""
        ...


@dataclass(frozen=True)
class LaneRoutes:
    """The routes the lane serves. A connection is the lane's when its first request line starts
    with a route's prefix, and is then that route's alone: a later request the route does not
    take is aiohttp's (Alipay's connections carry notifications, a merchant's services' carry
    API calls, and a refusal before any request is read is answered in that route's shape)."""

    routes: tuple[LaneRoute, ...] = ()

    @functools.cached_property
    def prefixes(self) -> tuple[tuple[bytes, LaneRoute], ...]:
        """Each route's request-line prefixes, paired with it, in the routes' order."""
        return tuple(
            (prefix, route) for route in self.routes for prefix in route.request_line_prefixes
        )


LANE = web.AppKey("lane", LaneRoutes)


def add_lane_route(app: web.Application, route: LaneRoute) -> None:
    """Serve ``route`` on the lane, after the routes already there."""
    app[LANE] = LaneRoutes((*app.get(LANE, LaneRoutes()).routes, route))


class LaneHost(Protocol):
    """What a lane connection needs from its listener (``ConnectionGuards``)."""

    read_timeout: float
    keepalive_timeout: float
    max_body_bytes: int

    @property
    def cutoffs(self) -> ClientCutoffs: ...

    def aiohttp_connection(self) -> asyncio.Protocol:
        """A guarded aiohttp connection, counted already, not yet made."""
        ...

    def lane_ended(self, connection: Any, counted: bool) -> None:
        """``connection`` is closed (``counted``: by the lane) or aiohttp's alone."""
        ...


def encode_answer(answer: LaneAnswer, keep_alive: bool, version: str = "1.1") -> bytes:
    """The answer's bytes: status line, headers and body, as one write. An HTTP/1.0 client keeps
    the connection only when told so."""
    lines = [
        f"HTTP/1.1 {answer.status} {_reason(answer.status)}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        f"Date: {http_date()}",
        *(f"{name}: {value}" for name, value in answer.headers),
    ]
    if not keep_alive:
        lines.append("Connection: close")
    elif version == "1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _HttpDate:
    """The ``Date`` header's value (RFC 9110), formatted once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = 0
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._text = now, email.utils.formatdate(now, usegmt=True)
        return self._text


http_date = _HttpDate()
