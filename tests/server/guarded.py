"""Subgate served as ``run.py serve`` serves it (``GuardedSite``) on 127.0.0.1, and the raw-socket
clients that misbehave against it: hanging up, dribbling, holding connections open."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from server.ops.metrics import METRICS, Metrics
from server.runtime.open_files import connection_cap, raise_open_file_limit
from server.settings import Settings
from server.web.serving import GuardedSite, guarded_runner
from server.wiring import build_app
from tests.server.conftest import Clock

DEADLINE_SECONDS = 15.0


@dataclass
class Served:
    app: web.Application
    site: GuardedSite

    @property
    def port(self) -> int:
        return self.site.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    def error_answers(self, code: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "subgate_error_answers_total", {"code": code}
        )
        return value or 0.0

    def cutoffs(self, kind: str, label: str) -> int:
        return self.metrics.clients.totals().get((kind, label), 0)


@contextlib.asynccontextmanager
async def serve_guarded(settings: Settings) -> AsyncIterator[Served]:
    """``build_app(settings)`` on a guarded site at a free port; its cap as ``run.py`` sets it."""
    app = build_app(settings, clock=Clock())
    runner = guarded_runner(app)
    await runner.setup()
    try:
        site = GuardedSite(
            runner, "127.0.0.1", 0, connection_cap(settings, raise_open_file_limit())
        )
        await site.start()
        yield Served(app, site)
    finally:
        await runner.cleanup()


async def until(
    condition: Callable[[], bool], what: str, deadline: float = DEADLINE_SECONDS
) -> None:
    """Poll for a state change the server (or a process it started) makes: bounded, never a
    fixed sleep."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # the server may have reset it first
        await writer.wait_closed()


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (a reset ends it too)."""
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE_SECONDS)
    except ConnectionResetError:
        return b""


async def dribble(writer: asyncio.StreamWriter, until_done: asyncio.Future[bytes]) -> None:
    """Send one byte every 50 ms until ``until_done`` (the server's answer or close) is in."""
    while not until_done.done():
        try:
            writer.write(b"a")
            await writer.drain()
        except OSError:
            return  # the server closed: the reader sees it
        await asyncio.wait([until_done], timeout=0.05)


async def dribbled(port: int, start: bytes) -> tuple[bytes, float]:
    """Send ``start``, then a byte every 50 ms until the server answers or closes: what it sent
    back, and the seconds from ``start`` to the end."""
    reader, writer = await connect(port)
    began = time.monotonic()
    writer.write(start)
    answer = asyncio.ensure_future(read_to_end(reader))
    await dribble(writer, answer)
    raw = await answer
    elapsed = time.monotonic() - began
    await close(writer)
    return raw, elapsed


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def from_lane(self) -> bool:
        """The lane (server/web/lane.py) answers without aiohttp's ``Server`` header."""
        return "server" not in self.headers


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One answer off the stream: its head, then exactly Content-Length bytes of body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_SECONDS)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Answer(int(status_line.split()[1]), headers, body)


async def answers_to(port: int, data: bytes, count: int) -> list[Answer]:
    """The first ``count`` answers to ``data``, written at once on a new connection."""
    reader, writer = await connect(port)
    writer.write(data)
    try:
        return [await read_answer(reader) for _ in range(count)]
    finally:
        await close(writer)


def parse_answer(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)
