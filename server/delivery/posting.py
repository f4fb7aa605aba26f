"""One attempt: post an event's payload to a destination and say what came back.

The whole attempt (connecting, sending, the answer's headers and the part of its body that is
read) is bounded by the destination's ``timeout_seconds``, and at most ``max_response_bytes`` of
the body is read: a receiver answering slowly or at length costs one timeout and one buffer,
never more. The body itself is never kept; an attempt keeps its status code, how long it took and
a short error written here (never the URL, which may carry credentials, nor the answer's text).
Latency is measured on the monotonic clock: it is a duration, not a point in time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from server.delivery.connection import (
    ClosedWithoutAnswer,
    ExchangeFailed,
    MalformedAnswer,
    Progress,
)
from server.delivery.pool import DestinationPool

MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code (None: no answer), its latency, a short error."""

    status_code: int | None
    latency_ms: int
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """Standard Webhooks: any 2xx answer takes the event."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Request:
    """Where and how one destination is posted to."""

    url: str
    timeout_seconds: float
    max_response_bytes: int


async def post_event(
    pool: DestinationPool, request: Request, body: bytes, headers: Mapping[str, str]
) -> Answer:
    """Post ``body`` once; every failure becomes an ``Answer`` (a cancellation still raises)."""
    return await send_request(pool, request, pool.encode(headers, body))


async def send_request(pool: DestinationPool, request: Request, encoded: bytes) -> Answer:
    """As ``post_event``, for a request ``pool`` encoded beforehand."""
    started = time.perf_counter()
    status: int | None = None
    progress = Progress()
    try:
        async with asyncio.timeout(request.timeout_seconds):
            answered = await pool.send(encoded, progress)
        status = answered.status
        error = _status_error(status, answered.cut, request.max_response_bytes)
    except TimeoutError:
        status = progress.status
        error = _joined(_status_error(status), "timed out reading the answer" if status else None)
        error = error or f"timed out after {request.timeout_seconds:g} s"
    except (ExchangeFailed, OSError) as problem:
        status = problem.status if isinstance(problem, MalformedAnswer) else None
        error = _joined(_status_error(status), describe_failure(problem))
    latency_ms = round((time.perf_counter() - started) * 1000)
    if error is None or (status is not None and 200 <= status < 300):
        return Answer(status, latency_ms)  # a 2xx took the event, however its body ended
    return Answer(status, latency_ms, error[:MAX_ERROR_CHARS])


def _status_error(status: int | None, cut: bool = False, limit: int = 0) -> str | None:
    """The error an answer's status and size make, if any (a 2xx answer has none)."""
    failed = None if status is None or 200 <= status < 300 else f"HTTP {status}"
    return _joined(failed, f"answer cut off after {limit} bytes" if cut and failed else None)


def _joined(*parts: str | None) -> str | None:
    kept = [part for part in parts if part]
    return "; ".join(kept) if kept else None


def describe_failure(problem: ExchangeFailed | OSError) -> str:
    """A short name for a failed exchange, from the error's kind and its OS error number only:
    an error's own text may repeat the host or the URL."""
    if isinstance(problem, socket.gaierror):
        return "cannot connect: the host name does not resolve"
    if isinstance(problem, ssl.SSLCertVerificationError):
        return "cannot connect: the certificate was not trusted"
    if isinstance(problem, ssl.SSLError):
        return "cannot connect: the TLS handshake failed"
    if isinstance(problem, OSError):
        return "cannot connect: " + (os.strerror(problem.errno) if problem.errno else "no answer")
    if isinstance(problem, ClosedWithoutAnswer):
        return "the server closed the connection without an answer"
    if isinstance(problem, MalformedAnswer) and problem.status is not None:
        return "the answer's body was malformed"
    return "malformed answer"
