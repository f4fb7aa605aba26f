"""A lane connection's requests that are not the lane's, handed to aiohttp on the same connection.

A client may send any request on a connection that began with a notification (a proxy in front of
Subgate pools its connections, and so do HTTP clients). The lane has parsed such a request, so
its bytes are written again, head and body, for the aiohttp connection (``ConnectionGuard``) that
serves the rest of the connection from then on: the request as parsed, the same method, target,
version and header fields in their order, a chunked body chunked again. Nothing goes to aiohttp
until the lane has written its last answer, so answers keep the requests' order. Once the lane's
parser stands between two requests with nothing left over, the connection is aiohttp's alone and
its bytes go to aiohttp untouched (``passing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

# Past this many bytes held for aiohttp while the lane is still answering, reading pauses.
HELD_LIMIT_BYTES = 256 * 1024
# What stands for a request the lane could not parse once aiohttp has the connection: aiohttp
# answers the requests before it, then refuses this one (400) and closes.
UNPARSEABLE = b"\x00\r\n\r\n"


def request_head(
    method: bytes, url: bytes, version: str, headers: Sequence[tuple[bytes, bytes]]
) -> bytes:
    lines = [method + b" " + url + b" HTTP/" + version.encode("ascii")]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def is_chunked(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in headers
    )


class Fallback:
    """The aiohttp connection that takes over a lane connection, and what is held for it until
    then. The connection is made (and counted by the listener) only when it takes over."""

    def __init__(self, make_connection: Callable[[], asyncio.Protocol]) -> None:
        self._make_connection = make_connection
        self.connection: asyncio.Protocol | None = None
        self._held: list[bytes] = []
        self._held_bytes = 0
        self.chunked = False  # the request being written again has a chunked body
        self.mid_request = False  # between its head and its end

    @property
    def released(self) -> bool:
        return self.connection is not None

    @property
    def holding_too_much(self) -> bool:
        return self._held_bytes > HELD_LIMIT_BYTES

    def head(
        self, method: bytes, url: bytes, version: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        self.chunked, self.mid_request = is_chunked(headers), True
        self.send(request_head(method, url, version, headers))

    def body(self, data: bytes) -> None:
        self.send(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    def end(self) -> None:
        self.mid_request = False
        if self.chunked:
            self.send(b"0\r\n\r\n")

    def send(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.data_received(data)
        else:
            self._held.append(data)
            self._held_bytes += len(data)

    def release(self, transport: asyncio.Transport) -> asyncio.Protocol:
        """The lane has answered everything before: aiohttp takes the connection (once)."""
        if self.connection is not None:
            return self.connection
        self.connection = connection = self._make_connection()
        connection.connection_made(transport)
        held, self._held, self._held_bytes = self._held, [], 0
        for data in held:
            connection.data_received(data)
        return connection
