"""One connection served on the lane (``server/web/lane.py``): httptools parses, the route answers.

It keeps what aiohttp's connections keep (``server/web/connection_guard.py``): a request's
headers, then its body, each have ``read_timeout_seconds`` (late headers close the connection, a
late body is answered 408); an idle connection closes after ``keepalive_timeout_seconds``; a body
over ``max_body_bytes`` is answered 413 unread (by its Content-Length, or once a chunked one
passes it), a head over ``MAX_HEAD_BYTES`` or a request that is not HTTP/1.x 400, and those close
the connection; pipelined requests are answered in order (``server/web/lane_answers.py``), and
reading pauses while too many wait or the client does not read its answers; ``Expect:
100-continue`` is answered before the body. A request the route does not take goes to aiohttp
(``server/web/lane_fallback.py``), and so does the rest of the connection after it.
"""

from __future__ import annotations

import asyncio
import enum
from typing import cast

import httptools

from server.errors import MalformedRequest, PayloadTooLarge, RequestRefused, RequestTimeout
from server.web.closing import close_gently
from server.web.deadline import ReadDeadline
from server.web.lane import LaneHost, LaneRequest, LaneRoute
from server.web.lane_answers import AnswerQueue, Pending
from server.web.lane_fallback import Fallback

MAX_HEAD_BYTES = 64 * 1024  # a request line and header fields past this are refused


class Phase(enum.Enum):
    WAITING = "waiting"  # for a request's first byte: the keep-alive timeout
    HEADERS = "headers"
    BODY = "body"
    READ = "read"  # read whole; its answer may still be on its way


class LaneConnection(asyncio.Protocol):
    def __init__(self, host: LaneHost, route: LaneRoute) -> None:
        self._host = host
        self._route = route
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._deadline = ReadDeadline(self._loop, self._late)
        self._phase = Phase.WAITING
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._request: LaneRequest | None = None  # being read, the lane's
        self._fallback: Fallback | None = None
        self._aiohttp: asyncio.Protocol | None = None  # the fallback's, once it has taken over
        self._between_requests = True  # the parser has nothing of a next request
        self._answers = AnswerQueue(route, self)
        self._reading = True  # False once nothing more will be read (refused, closing)
        self._paused = False
        self._writing_paused = False  # the client is not reading its answers
        self._lost = False
        self.done: asyncio.Future[None] = self._loop.create_future()  # closed, nothing in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._answers.transport = self._transport

    def data_received(self, data: bytes) -> None:
        if not self._reading:
            return  # the rest of a request we refused, or closing: read and dropped
        if self._phase is Phase.HEADERS:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES + len(data):
                return self._refuse(MalformedRequest("the request head is too large"))
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:  # only a request aiohttp takes
            assert self._fallback is not None
            self._fallback.send(data[upgrade.args[0] :])
            self._between_requests = True  # the rest is not HTTP/1.1 requests: aiohttp's alone
        except httptools.HttpParserError:
            if self._fallback is not None:
                self._fallback.send(data)  # aiohttp answers what it makes of it
                self._between_requests = True
            else:
                return self._refuse(MalformedRequest("the request is not valid HTTP/1.1"))
        if self._fallback is not None:
            if self._fallback.holding_too_much:
                self._pause()
            self._hand_over_if_idle()

    def eof_received(self) -> bool | None:
        if self._aiohttp is not None:
            return self._aiohttp.eof_received()
        self._reading = False
        return None if self._answers.idle else True  # open until the answers are written

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        self._reading, self._lost = False, True
        if self._phase is Phase.BODY and self._request is not None:
            self._host.cutoffs.disconnected(self._request.target.route)
        if self._aiohttp is not None:
            self._aiohttp.connection_lost(exc)
        self._host.lane_ended(self, counted=self._aiohttp is None)
        if self._answers.idle:
            self._finished()

    def pause_writing(self) -> None:
        if self._aiohttp is not None:
            self._aiohttp.pause_writing()
        else:
            self._writing_paused = True
            self._pause()  # a client that does not read its answers gets no more read

    def resume_writing(self) -> None:
        if self._aiohttp is not None:
            self._aiohttp.resume_writing()
        else:
            self._writing_paused = False
            self._resume()

    def on_message_begin(self) -> None:
        self._between_requests = False
        if not self._reading:
            return  # pipelined behind a refusal: never answered
        self._url, self._headers, self._head_bytes = b"", [], 0
        self._start(Phase.HEADERS, self._host.read_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self._reading:
            return
        parser = self._parser
        method, version = parser.get_method(), parser.get_http_version()
        target = None if self._fallback else self._route.target(method, self._url)
        request = (
            None
            if target is None
            else LaneRequest(method, self._url, version, self._headers, target)
        )
        if request is None or parser.should_upgrade() or request.encoded:
            self._fall_back(method, version)  # aiohttp decodes a Content-Encoding
            return
        self._request = request
        self._body, self._body_bytes = [], 0
        self._start(Phase.BODY, self._host.read_timeout)
        length = request.header(b"content-length")
        if (
            length is not None
            and length.strip().isdigit()
            and int(length) > self._host.max_body_bytes
        ):
            self._refuse(PayloadTooLarge(f"body is larger than {self._host.max_body_bytes} bytes"))
        elif (request.header(b"expect") or "").lower() == "100-continue":
            self._answers.let_body_come()

    def on_body(self, body: bytes) -> None:
        if not self._reading:
            return  # refused while it was read
        if self._fallback is not None and self._fallback.mid_request:
            self._fallback.body(body)
            return
        self._body.append(body)
        self._body_bytes += len(body)
        if self._body_bytes > self._host.max_body_bytes:
            self._refuse(PayloadTooLarge(f"body is larger than {self._host.max_body_bytes} bytes"))

    def on_message_complete(self) -> None:
        self._between_requests = True
        if self._fallback is not None and self._fallback.mid_request:
            self._fallback.end()
            self._phase = Phase.READ
            self._deadline.stop()
            return
        request, self._request = self._request, None
        if request is None or not self._reading:
            return  # refused while it was read
        request.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._phase = Phase.READ
        self._deadline.stop()
        self._enqueue(Pending(request, self._parser.should_keep_alive()))

    def _enqueue(self, pending: Pending) -> None:
        self._answers.add(pending)
        if self._answers.full:
            self._pause()

    def answered_all(self) -> None:
        """Every answer is written (``AnswerQueue``): aiohttp's turn, or the keep-alive wait."""
        if self._lost:
            self._finished()
            return
        self._now_idle()

    def _now_idle(self) -> None:
        if not self._reading and self._fallback is None:
            self.close()
            return
        self._resume()
        self._hand_over_if_idle()
        if self._phase is Phase.READ and self._fallback is None:
            self._start(Phase.WAITING, self._host.keepalive_timeout)

    def _refuse(self, error: RequestRefused) -> None:
        """Answer ``error`` after the answers before it, read nothing more, then close (at once
        when aiohttp holds requests read before: its answers would come after this one)."""
        self._reading = False
        self._deadline.stop()
        if self._fallback is not None:
            self.close()
            return
        request, self._request = self._request, None
        self._enqueue(Pending(request, False, self._route.refused(request, error)))

    def _fall_back(self, method: bytes, version: str) -> None:
        if self._fallback is None:
            self._fallback = Fallback(self._host.aiohttp_connection)
        self._deadline.stop()  # aiohttp's guard keeps the body's deadline once it has the head
        self._fallback.head(method, self._url, version, self._headers)

    def _hand_over_if_idle(self) -> None:
        fallback, transport = self._fallback, self._transport
        if fallback is None or transport is None or transport.is_closing():
            return
        if not self._answers.idle:
            return
        self._resume()
        self._aiohttp = fallback.release(transport)
        if self._between_requests and not fallback.mid_request:
            self._deadline.cancel()
            transport.set_protocol(self._aiohttp)  # its bytes go to aiohttp untouched
            self._host.lane_ended(self, counted=False)
            self._finished()

    def _start(self, phase: Phase, seconds: float) -> None:
        self._phase = phase
        self._deadline.start(seconds)

    def _late(self) -> None:
        phase, self._phase = self._phase, Phase.READ
        if phase is Phase.WAITING:
            self.close()  # idle past the keep-alive timeout
            return
        self._host.cutoffs.timed_out(phase.value, self._host.read_timeout)
        if phase is Phase.BODY and self._request is not None:
            self._refuse(RequestTimeout("the request body did not arrive in time"))
        else:
            self._reading = False
            self.close()

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._writing_paused or self._answers.full:
            return
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def close(self, gently: bool = False) -> None:
        """Close; ``gently`` when the client may still be sending what we did not read: a reset
        could discard our answer before it is read (``close_gently``)."""
        self._reading = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if gently:
            close_gently(transport)
        else:
            transport.close()

    async def shutdown(self) -> None:
        """Read no more requests, answer those read, then close."""
        self._reading = False
        if self._answers.idle:
            self.close()
        await asyncio.shield(self.done)

    def _finished(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        """Close now, answered or not (shutdown's time is up)."""
        self._reading = False
        if self._transport is not None:
            self._transport.abort()
