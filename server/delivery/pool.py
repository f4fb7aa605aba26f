"""A destination's connections: opened when a post needs one, kept while the destination keeps
them alive, never more open than posts in flight (the ``Courier``'s slots bound those).

Every request is the same but for its headers and body, so the part that never changes (request
line, ``Host``, credentials from the URL) is encoded once. A connection the destination closed
while it sat idle is found out when it is reused: that post goes once more on a new connection
(the destination never read it, and a receiver drops a repeated ``webhook-id`` anyway).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from server.delivery.connection import (
    Answered,
    ClosedWithoutAnswer,
    DestinationConnection,
    Progress,
)

DEFAULT_PORTS = {"http": 80, "https": 443}


def request_head(url: str) -> bytes:
    """The request line and the headers every post to ``url`` carries."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "User-Agent: Subgate"]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def encode_request(head: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
    """One whole request: ``head``, the post's own headers, its length, its body."""
    own = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return b"%s%sContent-Length: %d\r\n\r\n%s" % (head, own.encode("latin-1"), len(body), body)


class DestinationPool:
    """Posts to one destination URL over reused HTTP/1.1 connections."""

    def __init__(
        self, url: str, max_response_bytes: int, tls: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or ""
        self._port = parts.port or DEFAULT_PORTS[parts.scheme]
        self._tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self._head = request_head(url)
        self._max_body = max_response_bytes
        self._idle: list[DestinationConnection] = []

    def encode(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The whole request of one post: what ``send`` writes."""
        return encode_request(self._head, headers, body)

    async def send(self, request: bytes, progress: Progress | None = None) -> Answered:
        """Send a request already encoded (``encode``) once and read the answer
        (``ExchangeFailed`` or ``OSError`` when there is none). A cancellation closes the
        connection in use; ``progress`` keeps how far it got."""
        progress = progress or Progress()
        reused = self._take_idle()
        if reused is not None:
            try:
                return await self._exchange(reused, request, progress)
            except ClosedWithoutAnswer:
                pass  # closed while idle: once more, on a new connection
        return await self._exchange(await self._open(), request, progress)

    def close(self) -> None:
        """Close the idle connections (busy ones close when their exchange ends)."""
        while self._idle:
            self._idle.pop().close()

    def _take_idle(self) -> DestinationConnection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _open(self) -> DestinationConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: DestinationConnection(self._max_body),
            self._host,
            self._port,
            ssl=self._tls,
            server_hostname=self._host if self._tls is not None else None,
        )
        return connection

    async def _exchange(
        self, connection: DestinationConnection, request: bytes, progress: Progress
    ) -> Answered:
        try:
            answered = await connection.exchange(request, progress)
        except BaseException:
            connection.close()
            raise
        if answered.reusable:
            self._idle.append(connection)
        else:
            connection.close()
        return answered
