"""One connection served on the lane (``server/web/lane.py``): httptools parses, the route answers.

It keeps what aiohttp's connections keep (``server/web/connection_guard.py``): read deadlines and
size bounds (``server/web/lane_reading.py``; late headers close the connection, a late body is
answered 408, a body too large 413 unread, a head too large or a request that is not HTTP/1.x
400, and those close it); pipelined requests answered in order (``server/web/lane_answers.py``),
reading paused while too many wait or the client does not read its answers; ``Expect:
100-continue`` answered before the body. A request the route does not take goes to aiohttp
(``server/web/lane_fallback.py``), and so does the rest of the connection after it.
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from server.errors import MalformedRequest, PayloadTooLarge, RequestRefused, RequestTimeout
from server.web.closing import close_gently
from server.web.lane import LaneHost, LaneRequest, LaneRoute
from server.web.lane_answers import AnswerQueue, Pending
from server.web.lane_fallback import UNPARSEABLE, Fallback
from server.web.lane_reading import Phase, RequestReading


class LaneConnection(asyncio.Protocol):
    def __init__(self, host: LaneHost, route: LaneRoute) -> None:
        self._host = host
        self._route = route
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._reading_state = RequestReading(host, self._late)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._request: LaneRequest | None = None  # being read, the lane's
        self._fallback: Fallback | None = None
        self._aiohttp: asyncio.Protocol | None = None  # the fallback's, once it has taken over
        self._between_requests = True  # the parser has nothing of a next request
        self._passing = False  # after an upgrade: the rest is aiohttp's bytes, not requests
        self._closing = False
        self._stopping = False  # shutdown: answer the request being read, then no more
        self._linger: asyncio.TimerHandle | None = None
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
        if self._passing and self._fallback is not None:
            self._fallback.send(data)
            return self._hand_over_if_idle()
        if not self._reading:
            return  # the rest of a request we refused, or closing: read and dropped
        too_large = self._reading_state.arrived(len(data))
        if too_large is not None:
            return self._refuse(too_large)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:  # only a request aiohttp takes
            assert self._fallback is not None
            self._fallback.send(data[upgrade.args[0] :])
            self._passing = self._between_requests = True
        except httptools.HttpParserError:
            if self._fallback is None or self._fallback.mid_request:
                return self._refuse(MalformedRequest("the request is not valid HTTP/1.1"))
            self._fallback.send(UNPARSEABLE)  # aiohttp answers those before, then refuses it
            self._reading, self._between_requests = False, True
        too_large = self._reading_state.parsed(len(data))
        if too_large is not None and self._reading:
            return self._refuse(too_large)
        if self._fallback is not None:
            if self._fallback.holding_too_much:
                self._pause()
            self._hand_over_if_idle()

    def eof_received(self) -> bool | None:
        if self._aiohttp is not None:
            return self._aiohttp.eof_received()
        self._reading = False
        if self._answers.idle and self._fallback is None:
            return None
        return True  # open until the answers are written

    def connection_lost(self, exc: Exception | None) -> None:
        self._reading_state.cancel()
        if self._linger is not None:
            self._linger.cancel()
        self._reading, self._lost = False, True
        if self._reading_state.phase is Phase.BODY and self._request is not None:
            self._host.cutoffs.disconnected(self._request.target.route)
        if self._aiohttp is not None:
            self._aiohttp.connection_lost(exc)
        self._host.lane_ended(self, counted=self._aiohttp is None)
        if self._answers.idle:
            self._finished()

    def pause_writing(self) -> None:
        if self._aiohttp is not None:
            return self._aiohttp.pause_writing()
        self._writing_paused = True
        self._pause()  # a client that does not read its answers gets no more read

    def resume_writing(self) -> None:
        if self._aiohttp is not None:
            return self._aiohttp.resume_writing()
        self._writing_paused = False
        self._resume()

    def on_message_begin(self) -> None:
        self._between_requests = False
        if not self._reading:
            return  # pipelined behind a refusal: never answered
        self._url, self._headers = b"", []
        self._reading_state.headers_begin()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._reading_state.phase is Phase.HEADERS:  # later ones are trailers: not kept
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
        self._reading_state.body_begin()
        length = request.header(b"content-length")
        if (
            length is not None
            and length.strip().isdigit()
            and int(length) > self._host.max_body_bytes
        ):
            self._refuse(PayloadTooLarge(f"body is larger than {self._host.max_body_bytes} bytes"))
        elif request.expects_continue:
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
            self._reading_state.read_whole()
            return
        request, self._request = self._request, None
        if request is None or not self._reading:
            return  # refused while it was read
        request.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._reading_state.read_whole()
        self._reading = not self._stopping  # shutdown: this one is answered, no later one
        self._enqueue(Pending(request, self._parser.should_keep_alive() and not self._stopping))

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
        if self._closing:
            return
        if not self._reading and self._fallback is None:
            self.close()
            return
        self._resume()
        self._hand_over_if_idle()
        if self._reading_state.phase is Phase.READ and self._fallback is None:
            self._reading_state.wait_for_next()

    def _refuse(self, error: RequestRefused) -> None:
        """Answer ``error`` after the answers before it, read nothing more, then close (at once
        when aiohttp holds requests read before: its answers would come after this one)."""
        self._reading = False
        self._reading_state.stop()
        if self._fallback is not None:
            self.close()
            return
        request, self._request = self._request, None
        self._enqueue(Pending(request, False, self._route.refused(request, error)))

    def _fall_back(self, method: bytes, version: str) -> None:
        if self._fallback is None:
            self._fallback = Fallback(self._host.aiohttp_connection)
        self._reading_state.body_begin(timed=False)  # bounded as a body, timed by aiohttp
        self._fallback.head(method, self._url, version, self._headers)

    def _hand_over_if_idle(self) -> None:
        fallback, transport = self._fallback, self._transport
        if fallback is None or transport is None or transport.is_closing():
            return
        if not self._answers.idle:
            return
        self._resume()
        if self._aiohttp is None:  # a client's end seen before stays unsaid: aiohttp answers
            self._aiohttp = fallback.release(transport)
        if self._between_requests and not fallback.mid_request:
            self._reading_state.cancel()
            transport.set_protocol(self._aiohttp)  # its bytes go to aiohttp untouched
            self._host.lane_ended(self, counted=False)
            self._finished()

    def _late(self, phase: Phase) -> None:
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
            if not self._writing_paused:  # our own pause: the client is not late meanwhile
                self._reading_state.hold()

    def _resume(self) -> None:
        if self._writing_paused or self._answers.full:
            return
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
            self._reading_state.resume(timed=self._fallback is None)

    def close(self, gently: bool = False) -> None:
        """Close (once); ``gently`` when the client may still be sending what we did not read: a
        reset could discard our answer before it is read (``close_gently``)."""
        self._reading = False
        transport = self._transport
        if self._closing or transport is None or transport.is_closing():
            return
        self._closing = True
        if gently:
            self._linger = close_gently(transport)
        else:
            transport.close()

    @property
    def reading_a_request(self) -> bool:
        return self._reading_state.in_request

    def stop_reading(self) -> asyncio.Future[None]:
        """Read no request after the one being read (its deadlines bound it), answer those
        read, then close: ``done`` says when."""
        self._stopping = True
        if not self._reading_state.in_request:
            self._reading = False
            if self._answers.idle:
                self.close()
        return self.done

    def _finished(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def abort(self) -> None:
        """Close now, answered or not (shutdown's time is up)."""
        if self._transport is not None:
            self._transport.abort()
