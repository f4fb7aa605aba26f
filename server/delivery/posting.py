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
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

READ_CHUNK_BYTES = 65536
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
    session: aiohttp.ClientSession, request: Request, body: bytes, headers: Mapping[str, str]
) -> Answer:
    """Post ``body`` once; every failure becomes an ``Answer`` (a cancellation still raises)."""
    started = time.perf_counter()
    status: int | None = None
    try:
        async with asyncio.timeout(request.timeout_seconds):
            async with session.post(
                request.url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                status = response.status
                cut = await _read_capped(response.content, request.max_response_bytes)
                if cut:
                    response.close()  # the rest is never read: the connection is not reused
                error = _status_error(status, cut, request.max_response_bytes)
    except TimeoutError:
        error = _joined(_status_error(status), "timed out reading the answer" if status else None)
        error = error or f"timed out after {request.timeout_seconds:g} s"
    except aiohttp.ClientError as problem:
        error = _joined(_status_error(status), describe_failure(problem))
    latency_ms = round((time.perf_counter() - started) * 1000)
    if error is None or (status is not None and 200 <= status < 300):
        return Answer(status, latency_ms)  # a 2xx took the event, however its body ended
    return Answer(status, latency_ms, error[:MAX_ERROR_CHARS])


async def _read_capped(content: aiohttp.StreamReader, limit: int) -> bool:
    """Read the answer's body up to ``limit`` bytes; whether more was left (it was cut off)."""
    read = 0
    while read <= limit:
        chunk = await content.read(min(READ_CHUNK_BYTES, limit + 1 - read))
        if not chunk:
            return False
        read += len(chunk)
    return True


def _status_error(status: int | None, cut: bool = False, limit: int = 0) -> str | None:
    """The error an answer's status and size make, if any (a 2xx answer has none)."""
    failed = None if status is None or 200 <= status < 300 else f"HTTP {status}"
    return _joined(failed, f"answer cut off after {limit} bytes" if cut and failed else None)


def _joined(*parts: str | None) -> str | None:
    kept = [part for part in parts if part]
    return "; ".join(kept) if kept else None


def describe_failure(problem: aiohttp.ClientError) -> str:
    """A short name for a failed exchange, from the error's kind and its OS error number only:
    an aiohttp error's own text may repeat the URL."""
    if isinstance(problem, aiohttp.ClientConnectorError):
        if isinstance(problem.os_error, socket.gaierror):
            return "cannot connect: the host name does not resolve"
        number = problem.os_error.errno
        return "cannot connect: " + (os.strerror(number) if number else "no answer")
    if isinstance(problem, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    if isinstance(problem, aiohttp.ClientPayloadError):
        return "the answer's body was malformed"
    if isinstance(problem, aiohttp.ClientResponseError):
        return f"malformed answer (HTTP {problem.status})" if problem.status else "malformed answer"
    return f"request failed ({type(problem).__name__})"
