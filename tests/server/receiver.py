"""A merchant's service receiving Subgate's pushes: a real aiohttp server on 127.0.0.1 that keeps
every request it gets and answers as the test scripts it (``receiver.answer``).

``verify`` checks a request with the Standard Webhooks reference library (the ``standardwebhooks``
package), never with Subgate's own code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes
    peer: object = None  # the client's (host, port): one per connection
    arrived: float = field(default_factory=time.monotonic)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def type(self) -> str:
        return str(self.payload["type"])

    def verify(self, secret: str) -> Any:
        """The payload, if the reference library accepts the signature under ``secret``."""
        return Webhook(secret).verify(self.body, self.headers)


# How the receiver answers one request (the request itself, to stream an answer to it).
Answer = Callable[[web.Request, Received], Awaitable[web.StreamResponse]]


async def accept(request: web.Request, received: Received) -> web.StreamResponse:
    return web.Response(status=204)


@dataclass
class Receiver:
    """What the server got, in order, and how it answers the next request."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Answer = accept
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = None if request.transport is None else request.transport.get_extra_info("peername")
        received = Received(
            {k.lower(): v for k, v in request.headers.items()}, await request.read(), peer
        )
        async with self.arrived:
            self.received.append(received)
            self.arrived.notify_all()
        return await self.answer(request, received)

    async def wait_for(self, count: int, seconds: float = 15.0) -> list[Received]:
        """Wait until ``count`` requests have arrived; all that did."""
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.received) >= count), seconds
            )
            return list(self.received)

    def ids(self) -> list[str]:
        return [received.webhook_id for received in self.received]


def answering(status: int, body: bytes = b"") -> Answer:
    """Answer every request with ``status`` and ``body``."""

    async def answer(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=status, body=body)

    return answer


@asynccontextmanager
async def receiving(path: str = "/hook") -> AsyncIterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1 until the block ends."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url(path))
    try:
        yield receiver
    finally:
        await server.close()
