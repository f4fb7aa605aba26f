"""One keep-alive HTTP/1.1 connection to a destination: it writes a request and reads the answer.

Pushes are small, many and all alike (one POST, one short answer), so the general-purpose client
cost more event-loop time per push than everything else a push does together (bench/README.md).
This protocol writes a request in one call and hands the answer's bytes to httptools (llhttp,
the parser of Node.js): the HTTP grammar stays a well-kept library's, only the bookkeeping of one
request at a time is ours. The answer's body is counted, never kept: past ``max_body`` bytes the
answer is cut off and the connection is dropped, so a destination answering at length costs one
read buffer, never memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import httptools

INTERIM = range(100, 200)  # 1xx answers come before the real one (a 101 is refused as an upgrade)


class ExchangeFailed(Exception):
    """An exchange ended without a whole answer."""


class ClosedWithoutAnswer(ExchangeFailed):
    """The destination closed the connection before the first byte of an answer."""


class MalformedAnswer(ExchangeFailed):
    """The answer broke HTTP/1.1 (``status`` is set once its head was read whole)."""

    def __init__(self, status: int | None) -> None:
        super().__init__("malformed answer")
        self.status = status


@dataclass
class Progress:
    """How far an exchange got: the answer's status once its head was read (a timeout that
    comes later still knows it)."""

    status: int | None = None


@dataclass(frozen=True)
class Answered:
    """An answer's status; whether its body was cut off; whether the connection may be reused."""

    status: int
    cut: bool
    reusable: bool


class DestinationConnection(asyncio.Protocol):
    """One connection, one exchange at a time (the pool never shares a busy connection)."""

    def __init__(self, max_body: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answered] | None = None
        self._body_read = 0
        self._framed = False  # the answer says its length (Content-Length or chunked)
        self.status: int | None = None  # the current answer's, once its head is read
        self._progress = Progress()
        self.closed = False

    async def exchange(self, request: bytes, progress: Progress) -> Answered:
        """Write ``request`` and wait for its answer's end (or its cut-off)."""
        assert self._transport is not None and self._waiter is None, "one exchange at a time"
        self.status, self._body_read, self._framed = None, 0, False
        self._progress = progress
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._fail(MalformedAnswer(self.status))
            self.close()

    def eof_received(self) -> bool:
        return False  # close: this side has nothing more to say either

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.status is None:
            self._fail(ClosedWithoutAnswer())
        elif self._framed:  # the body it announced never came whole
            self._fail(MalformedAnswer(self.status))
        else:  # an answer without a length ends when the connection does
            self._finish(cut=False, reusable=False)

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status in INTERIM:
            self._framed = False  # the real answer's head follows
            return
        self.status = self._progress.status = status

    def on_body(self, body: bytes) -> None:
        self._body_read += len(body)
        if self._body_read > self._max_body:
            self._finish(cut=True, reusable=False)

    def on_message_complete(self) -> None:
        if self.status is not None:  # not an interim answer
            self._finish(cut=False, reusable=self._parser.should_keep_alive())

    def _finish(self, cut: bool, reusable: bool) -> None:
        if self._waiter is not None and not self._waiter.done() and self.status is not None:
            self._waiter.set_result(Answered(self.status, cut, reusable and not self.closed))

    def _fail(self, problem: ExchangeFailed) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(problem)
