"""A TCP proxy in front of the test PostgreSQL server that can lose a connection at COMMIT.

It reads the frontend protocol (startup, then type byte + length + body per message) so that it
knows when a client sends ``COMMIT`` after a statement naming a watched table, and then, once
armed, does one of two things to that connection:

- ``before``: drops it without forwarding the COMMIT (the server rolls the transaction back);
- ``after``: forwards the COMMIT, waits until the server has answered it (it is committed), and
  drops the connection without passing the answer on: the client cannot tell what happened.

Everything else is forwarded untouched, so the store under test runs its real code against the
real server. The client must not ask for TLS (``sslmode=disable`` in its URL): the proxy reads
bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Moment = Literal["before", "after"]
_LENGTH = struct.Struct("!I")


@dataclass
class CommitProxy:
    upstream_host: str
    upstream_port: int
    watched: bytes  # e.g. b"INSERT INTO notifications"
    armed: Moment | None = None
    dropped: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def arm(self, moment: Moment) -> None:
        """Lose the next COMMIT of a transaction that ran the watched statement, at ``moment``."""
        self.armed = moment

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_in, server_out = await asyncio.open_connection(
            self.upstream_host, self.upstream_port
        )
        backward = asyncio.create_task(_pipe(server_in, client_out))
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await self._forward(client_in, server_in, server_out, backward)
        finally:
            backward.cancel()
            for writer in (client_out, server_out):
                writer.close()
            self._tasks.discard(task)

    async def _forward(
        self,
        client_in: asyncio.StreamReader,
        server_in: asyncio.StreamReader,
        server_out: asyncio.StreamWriter,
        backward: asyncio.Task[None],
    ) -> None:
        startup = await _read_startup(client_in)
        server_out.write(startup)
        watching = False
        while True:
            kind = await client_in.readexactly(1)
            length = await client_in.readexactly(4)
            body = await client_in.readexactly(_LENGTH.unpack(length)[0] - 4)
            watching = watching or self.watched in body
            commit = kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT")
            if commit and watching and self.armed is not None:
                await self._lose(kind + length + body, server_in, server_out, backward)
                return
            if commit:
                watching = False
            server_out.write(kind + length + body)
            await server_out.drain()

    async def _lose(
        self,
        commit: bytes,
        server_in: asyncio.StreamReader,
        server_out: asyncio.StreamWriter,
        backward: asyncio.Task[None],
    ) -> None:
        moment, self.armed = self.armed, None
        backward.cancel()  # nothing more reaches the client
        with contextlib.suppress(asyncio.CancelledError):
            await backward
        if moment == "after":
            server_out.write(commit)
            await server_out.drain()
            # CommandComplete comes once the commit is durable, then ReadyForQuery ('Z'; no
            # other byte of those two messages is a 'Z').
            await server_in.readuntil(b"Z")
        self.dropped += 1


async def _read_startup(client_in: asyncio.StreamReader) -> bytes:
    length = await client_in.readexactly(4)
    return length + await client_in.readexactly(_LENGTH.unpack(length)[0] - 4)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Server to client until the server closes; then the client sees its end close too."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def through_proxy(url: str, port: int) -> str:
    """The same database URL, through the proxy on ``port``, without TLS."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("ssl", "sslmode")]
    netloc = f"{user}127.0.0.1:{port}"
    return urlunsplit(
        parts._replace(netloc=netloc, query=urlencode([*query, ("sslmode", "disable")]))
    )
