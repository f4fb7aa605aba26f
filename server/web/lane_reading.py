"""Where a lane connection's current request stands, and how much longer and larger it may be.

A request's headers, then its body, each get ``read_timeout_seconds`` (a deadline from their
first byte, not an idle timeout); between requests the connection may idle for
``keepalive_timeout_seconds``. Its bytes on the wire are bounded too, counted as they arrive,
before httptools has called back for any of them (a long header or trailer value is held inside
the parser until it ends): a head to ``MAX_HEAD_BYTES``, a body with its chunked framing and
trailers to ``WIRE_PER_BODY_BYTE`` times ``max_body_bytes`` plus two heads' worth. While the lane
itself has paused reading (answers to write, bytes held for aiohttp), the deadline waits: the
client is not late for what we did not read.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from server.errors import MalformedRequest, PayloadTooLarge, RequestRefused
from server.web.deadline import ReadDeadline
from server.web.lane import LaneHost

MAX_HEAD_BYTES = 64 * 1024  # a request line and header fields past this are refused
WIRE_PER_BODY_BYTE = 2


class Phase(enum.Enum):
    WAITING = "waiting"  # for a request's first byte: the keep-alive timeout
    HEADERS = "headers"
    BODY = "body"
    READ = "read"  # read whole (or no longer read); its answer may still be on its way


class RequestReading:
    def __init__(self, host: LaneHost, on_late: Callable[[Phase], None]) -> None:
        self._host = host
        self._on_late = on_late
        self._deadline = ReadDeadline(asyncio.get_running_loop(), self._late)
        self.phase = Phase.WAITING
        self._wire_bytes = 0
        self._held = False  # the lane paused reading for reasons of its own
        self._begun_unread = False  # a request began inside bytes not yet counted for it

    @property
    def in_request(self) -> bool:
        return self.phase in (Phase.HEADERS, Phase.BODY)

    def headers_begin(self) -> None:
        self.phase, self._wire_bytes, self._begun_unread = Phase.HEADERS, 0, True
        self._arm(self._host.read_timeout)

    def body_begin(self, timed: bool = True) -> None:
        """The body's deadline (``timed``), or none: aiohttp's own guard times a body it takes."""
        self.phase = Phase.BODY
        if timed:
            self._arm(self._host.read_timeout)
        else:
            self._deadline.stop()

    def read_whole(self) -> None:
        self.phase = Phase.READ
        self._deadline.stop()

    def wait_for_next(self) -> None:
        self.phase = Phase.WAITING
        self._arm(self._host.keepalive_timeout)

    def parsed(self, size: int) -> RequestRefused | None:
        """After ``size`` bytes were parsed: a request that began inside them counts them all
        (those of requests before it too: a bound errs on the safe side)."""
        if not self._begun_unread:
            return None
        self._begun_unread = False
        return self.arrived(size)

    def arrived(self, size: int) -> RequestRefused | None:
        """Count ``size`` bytes of the request being read; the refusal once it is too large."""
        self._begun_unread = False
        if not self.in_request:
            return None
        self._wire_bytes += size
        if self.phase is Phase.HEADERS:  # those bytes may end the head and carry a body too
            if self._wire_bytes - size > MAX_HEAD_BYTES:
                return MalformedRequest("the request head is too large")
            return None
        if self._wire_bytes > 2 * MAX_HEAD_BYTES + WIRE_PER_BODY_BYTE * self._host.max_body_bytes:
            return PayloadTooLarge(f"body is larger than {self._host.max_body_bytes} bytes")
        return None

    def hold(self) -> None:
        self._held = True
        self._deadline.stop()

    def resume(self, timed: bool) -> None:
        self._held = False
        if timed and self.in_request:
            self._deadline.start(self._host.read_timeout)

    def stop(self) -> None:
        self._deadline.stop()

    def cancel(self) -> None:
        self._deadline.cancel()

    def _arm(self, seconds: float) -> None:
        if not self._held:
            self._deadline.start(seconds)

    def _late(self) -> None:
        phase, self.phase = self.phase, Phase.READ
        self._on_late(phase)
