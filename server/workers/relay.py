"""The private channel between intake workers and the process that owns the store.

An intake worker (``server/workers/intake_process.py``) parses and verifies notifications on a core
of its own and relays each verified one here; the primary keeps it through its ``StoreSink`` (the
same group-committed store write, count and log line as its own intake) and answers once it is
durable, so a worker acknowledges nothing that is not stored. Workers also relay their refusal,
error-answer and client-cutoff counts, which the primary shows on /metrics and flushes with its own.

Wire format (``server/workers/wire.py``), over a Unix stream socket in a directory only the
service's user can enter: a stream of MessagePack frames holding plain values only (str, bin,
numbers, booleans, nil, arrays, maps; times as integer microseconds since the epoch), each
message kind with a fixed shape that is checked before anything acts on it. The format has no way
to name a class, so a frame can construct no object and run no code. On Linux the primary also
accepts connections only from the worker processes it started (``SO_PEERCRED``). Frames written
in one turn of the event loop go out in one write.

    worker -> primary   (seq, op, payload)
                        op: "hello" | "keep" | "refusals" | "errors" | "cutoffs" | "ready"
    primary -> worker   (seq, ok, value)     value: the answer, or the error message

A worker says "hello" with the protocol version and the record's field names before it serves,
so a worker started from other code than the primary's (a deploy while it runs) is refused
rather than storing fields in the wrong columns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from server.intake.gateway import StoreSink
from server.intake.refusals import RefusalCounter
from server.ops.metrics import Metrics
from server.runtime.log_format import LogFormat
from server.settings import EventLoopChoice, Settings
from server.workers.wire import (
    FRAME_OVERHEAD_BYTES,
    PROTOCOL_VERSION,
    RECORD_FIELDS,
    RELAY_REQUESTS,
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    parse_payload,
    peer_pid,
)
from storage.errors import StorageError
from storage.models import ConsentEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOrders:
    """What the primary hands a worker on its standard input (not over the relay)."""

    settings: Settings
    relay_path: Path
    log_level: int
    log_format: LogFormat = "text"

    @property
    def event_loop(self) -> EventLoopChoice:
        return self.settings.server.event_loop


class RelayServer:
    """The primary's end: keeps what workers relay, takes their counts, notes who is ready."""

    def __init__(
        self,
        sink: StoreSink,
        refusals: RefusalCounter,
        metrics: Metrics,
        *,
        max_body_bytes: int,
        is_worker: Callable[[int], bool],
        on_ready: Callable[[int], None],
    ) -> None:
        self._sink = sink
        self._refusals = refusals
        self._metrics = metrics
        self.frame_limit = max_body_bytes + FRAME_OVERHEAD_BYTES
        self.is_worker = is_worker
        self._on_ready = on_ready
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_WorkerConnection] = set()

    async def start(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _WorkerConnection(self), str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close()
            await self._server.wait_closed()

    async def answer(self, op: object, payload: object) -> Any:
        """The answer to one request, its payload checked against ``RELAY_REQUESTS`` first."""
        value = parse_payload(RELAY_REQUESTS, op, payload)
        if op == "keep":
            record, events = value
            consent = [ConsentEvent.model_validate(event) for event in events]
            outcome = await self._sink.keep(record, consent)
            return (outcome.notification_id, outcome.duplicate)
        if op == "refusals":
            self._refusals.add({(app, reason): n for app, reason, n in value})
        elif op == "errors":
            for code, n in value:
                self._metrics.error_answers.labels(code=code).inc(float(n))
        elif op == "cutoffs":
            self._metrics.clients.add({(kind, label): n for kind, label, n in value})
        elif op == "ready":
            self._on_ready(value)
        else:  # a second hello
            raise RelayError(f"unexpected op {op!r}")
        return None


class _WorkerConnection(asyncio.Protocol):
    def __init__(self, server: RelayServer) -> None:
        self._server = server
        self._frames = FrameReader(server.frame_limit)
        self._transport: asyncio.Transport | None = None
        self._out: CoalescedWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pid = peer_pid(transport)
        if pid is not None and not self._server.is_worker(pid):
            logger.error("intake relay: refused a connection from pid %d (not a worker)", pid)
            transport.close()
            return
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = CoalescedWriter(self._transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        try:
            for seq, op, payload in self._frames.feed(data):
                if not self._greeted:
                    self._greet(seq, op, payload)
                    continue
                task = asyncio.ensure_future(self._reply(seq, op, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except RelayError as error:
            logger.error("intake relay: dropping a worker connection: %s", error)
            self.close()

    def _greet(self, seq: int, op: object, payload: object) -> None:
        """The first frame must be a hello naming this protocol and record; else goodbye."""
        if op != "hello":
            raise RelayError("the first frame must be a hello")
        assert self._transport is not None
        if payload != (PROTOCOL_VERSION, RECORD_FIELDS):  # as decoded: arrays are tuples
            self._transport.write(encode_frame((seq, False, "another version of Subgate")))
            raise RelayError("a worker of another version of Subgate said hello; restart it")
        self._greeted = True
        self._transport.write(encode_frame((seq, True, None)))

    async def _reply(self, seq: int, op: object, payload: object) -> None:
        try:
            answer: tuple[Any, ...] = (seq, True, await self._server.answer(op, payload))
        except StorageError as error:
            answer = (seq, False, str(error))
        except (RelayError, ValueError, TypeError) as error:  # a malformed payload
            logger.error("intake relay: refused a %r frame: %s", op, error)
            answer = (seq, False, f"the relay refused the frame: {error}")
        except Exception:  # never leave a worker waiting: it answers 503, Alipay re-sends
            logger.exception("intake relay: a %r frame failed", op)
            answer = (seq, False, "the primary failed to keep it; see its log")
        if self._out is not None:
            self._out.send(encode_frame(answer))
