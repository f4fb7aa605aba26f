"""The private channel between intake workers and the process that owns the store.

An intake worker (``server/intake_worker.py``) parses and verifies notifications on a core of
its own and relays each verified one here; the primary keeps it through its ``StoreSink`` (the
same group-committed store write, count and log line as its own intake) and answers once it is
durable, so a worker acknowledges nothing that is not stored. Workers also relay their refusal
and error-answer counts, which the primary shows on /metrics and flushes with its own.

Wire format, over a Unix stream socket in a directory only the service's user can enter: each
frame is a 4-byte big-endian length and a pickle of plain values (str, bytes, numbers, None,
tuples, lists, dicts; times as integer microseconds since the epoch). Loading refuses every
global, so a frame can construct no object and run no code even if something else reached the
socket. Frames written in one turn of the event loop go out in one write.

    worker -> primary   (seq, op, payload)   op: "keep" | "refusals" | "errors" | "ready"
    primary -> worker   (seq, ok, value)     value: the answer, or the error message
"""

from __future__ import annotations

import asyncio
import io
import logging
import pickle
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from server.gateway import StoreSink
from server.metrics import Metrics
from server.refusals import RefusalCounter
from server.settings import Settings
from storage.errors import StorageError, StorageUnavailable
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
_RECORD_FIELDS = tuple(NotificationRecord.model_fields)
_TIME_FIELDS = frozenset({"occurred_at", "received_at"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkerOrders:
    """What the primary hands a worker on its standard input (not over the relay)."""

    settings: Settings
    relay_path: Path
    log_level: int


class RelayError(Exception):
    """A frame that is not the relay protocol: the connection is dropped."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the relay carries plain values only, not {module}.{name}")


def encode_frame(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def decode_message(payload: bytes) -> tuple[Any, ...]:
    try:
        message = _PlainUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise RelayError(f"undecodable frame: {error}") from None
    if not isinstance(message, tuple) or len(message) != 3:
        raise RelayError("a frame is a (seq, op or ok, payload) triple")
    return message


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise RelayError(f"frame of {length} bytes is over the limit")
            end = start + _LENGTH.size + length
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[start + _LENGTH.size : end]))
            start = end
        del buffer[:start]
        return frames


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // timedelta(microseconds=1)


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int):
        raise RelayError("a time is an integer number of microseconds")
    return _EPOCH + timedelta(microseconds=value)


def record_values(record: NotificationRecord) -> tuple[Any, ...]:
    return tuple(
        _micros(getattr(record, name)) if name in _TIME_FIELDS else getattr(record, name)
        for name in _RECORD_FIELDS
    )


def record_from_values(values: Sequence[Any]) -> NotificationRecord:
    if len(values) != len(_RECORD_FIELDS):
        raise RelayError("a notification record has the wrong number of fields")
    fields: dict[str, Any] = {
        name: _instant(value) if name in _TIME_FIELDS else value
        for name, value in zip(_RECORD_FIELDS, values, strict=True)
    }
    # The worker built it from verify/'s typed output; check the types that matter to storage.
    record = NotificationRecord.model_construct(**fields)
    if not isinstance(record.raw_body, bytes) or record.received_at is None:
        raise RelayError("a notification record has fields of the wrong type")
    return record


class _CoalescedWriter:
    """Frames written in one turn of the event loop leave in one ``write``: under load many
    requests (and many answers of one group commit) share a system call."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self._transport.is_closing():
            self._transport.write(b"".join(frames))


class RelayServer:
    """The primary's end: keeps what workers relay, takes their counts, notes who is ready."""

    def __init__(
        self,
        sink: StoreSink,
        refusals: RefusalCounter,
        metrics: Metrics,
        on_ready: Callable[[int], None],
    ) -> None:
        self._sink = sink
        self._refusals = refusals
        self._metrics = metrics
        self._on_ready = on_ready
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_WorkerConnection] = set()

    async def start(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _WorkerConnection(self), str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()

    async def answer(self, op: str, payload: Any) -> Any:
        if op == "keep":
            values, events = payload
            record = record_from_values(values)
            consent = [ConsentEvent.model_validate(event) for event in events]
            outcome = await self._sink.keep(record, consent)
            return (outcome.notification_id, outcome.duplicate)
        if op == "refusals":
            self._refusals.add({(app, reason): int(n) for app, reason, n in payload})
            return None
        if op == "errors":
            for code, n in payload:
                self._metrics.error_answers.labels(code=str(code)).inc(float(n))
            return None
        if op == "ready":
            self._on_ready(int(payload))
            return None
        raise RelayError(f"unknown op {op!r}")


class _WorkerConnection(asyncio.Protocol):
    def __init__(self, server: RelayServer) -> None:
        self._server = server
        self._frames = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._out: _CoalescedWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = _CoalescedWriter(self._transport)
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self._frames.feed(data):
                seq, op, payload = decode_message(frame)
                task = asyncio.ensure_future(self._reply(seq, op, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except RelayError as error:
            logger.error("intake relay: dropping a worker connection: %s", error)
            self.close()

    async def _reply(self, seq: int, op: str, payload: Any) -> None:
        try:
            answer: tuple[Any, ...] = (seq, True, await self._server.answer(op, payload))
        except StorageError as error:
            answer = (seq, False, str(error))
        except (RelayError, ValueError, TypeError) as error:  # a malformed payload
            logger.error("intake relay: refused a %r frame: %s", op, error)
            answer = (seq, False, "the relay refused the frame")
        if self._out is not None:
            self._out.send(encode_frame(answer))


class RelayClient(asyncio.Protocol):
    """A worker's end: one connection to the primary, requests answered out of order by seq.

    It is the worker's ``NotificationSink`` and ``RefusalSink``: once the connection is lost
    every waiting and later call raises ``StorageUnavailable`` (the notification is answered
    503 and Alipay sends it again), and ``lost`` is set so the worker can stop.
    """

    def __init__(self) -> None:
        self._frames = FrameReader()
        self._transport: asyncio.Transport | None = None
        self._out: _CoalescedWriter | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._seq = 0
        self.lost = asyncio.Event()

    @classmethod
    async def connect(cls, path: Path) -> RelayClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_unix_connection(cls, str(path))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = _CoalescedWriter(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(StorageUnavailable("the intake relay to the store is closed"))
        self.lost.set()

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self._frames.feed(data):
                seq, ok, value = decode_message(frame)
                future = self._waiting.pop(seq, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(StorageUnavailable(str(value)))
        except RelayError as error:
            logger.error("intake relay: dropping the connection: %s", error)
            self.close()

    async def call(self, op: str, payload: Any) -> Any:
        if self._out is None:
            raise StorageUnavailable("the intake relay to the store is closed")
        self._seq += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._seq] = future
        self._out.send(encode_frame((self._seq, op, payload)))
        return await future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def keep(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        wire_events = [event.model_dump(mode="json") for event in events]
        notification_id, duplicate = await self.call("keep", (record_values(record), wire_events))
        return RecordOutcome.model_construct(notification_id=notification_id, duplicate=duplicate)

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        await self.call("refusals", [(app, reason, n) for (app, reason), n in counts.items()])

    async def add_error_answers(self, counts: Mapping[str, float]) -> None:
        await self.call("errors", list(counts.items()))

    async def ready(self, pid: int) -> None:
        await self.call("ready", pid)
