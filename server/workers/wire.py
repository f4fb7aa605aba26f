"""The wire format between the primary and its worker processes: length-prefixed frames of
plain values, read and written without a copy per frame, and the notification record as values."""

from __future__ import annotations

import asyncio
import io
import pickle
import socket
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.models import NotificationRecord

PROTOCOL_VERSION = 1


# A relayed frame carries one notification body (at most max_body_bytes) and its small
# metadata; anything larger than this is not the protocol.
FRAME_OVERHEAD_BYTES = 1024 * 1024


_LENGTH = struct.Struct(">I")


_RECORD_FIELDS = tuple(NotificationRecord.model_fields)


_TIME_FIELDS = frozenset({"occurred_at", "received_at"})


_OPTIONAL_FIELDS = frozenset({"occurred_at"})


_BYTES_FIELDS = frozenset({"raw_body"})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RelayError(Exception):
    """A frame or payload that is not the relay protocol."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the relay carries plain values only, not {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("the relay carries no persistent ids")


def encode_frame(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def decode_message(payload: bytes) -> tuple[Any, ...]:
    try:
        message = _PlainUnpickler(io.BytesIO(payload)).load()
    except Exception as error:  # any malformed pickle, whatever the opcode made of it
        raise RelayError(f"undecodable frame: {type(error).__name__}: {error}") from None
    if not isinstance(message, tuple) or len(message) != 3:
        raise RelayError("a frame is a (seq, op or ok, payload) triple")
    return message


class FrameReader:
    """Splits a byte stream into frames, refusing one longer than ``limit`` before buffering it."""

    def __init__(self, limit: int) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self._limit:
                raise RelayError(f"frame of {length} bytes is over the limit of {self._limit}")
            end = start + _LENGTH.size + length
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[start + _LENGTH.size : end]))
            start = end
        del buffer[:start]
        return frames


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // timedelta(microseconds=1)


def _instant(value: object) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RelayError("a time is an integer number of microseconds")
    try:
        return _EPOCH + timedelta(microseconds=value)
    except OverflowError:
        raise RelayError("a time is out of range") from None


def record_values(record: NotificationRecord) -> tuple[Any, ...]:
    return tuple(
        _micros(getattr(record, name)) if name in _TIME_FIELDS else getattr(record, name)
        for name in _RECORD_FIELDS
    )


def record_from_values(values: object) -> NotificationRecord:
    """The record a worker built from verify/'s typed output; every field's type is checked,
    so that a bad one is refused alone and never fails the group commit it would join."""
    if not isinstance(values, tuple) or len(values) != len(_RECORD_FIELDS):
        raise RelayError("a notification record has the wrong number of fields")
    fields: dict[str, Any] = {}
    for name, value in zip(_RECORD_FIELDS, values, strict=True):
        if name in _TIME_FIELDS:
            optional = name in _OPTIONAL_FIELDS
            fields[name] = None if value is None and optional else _instant(value)
        elif not isinstance(value, bytes if name in _BYTES_FIELDS else str):
            raise RelayError(f"a notification record's {name} has the wrong type")
        else:
            fields[name] = value
    return NotificationRecord.model_construct(**fields)


class CoalescedWriter:
    """Frames written in one turn of the event loop leave in one ``write``: under load many
    requests (and many answers of one group commit) share a system call. Also used by the call
    workers' sockets (``server/workers/call_pool.py``)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def close(self) -> None:
        """Write what this turn has sent so far, then close (the transport writes it first)."""
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames and not self._transport.is_closing():
            self._transport.write(b"".join(frames))


def peer_pid(transport: asyncio.BaseTransport) -> int | None:
    """The process at the other end of a Unix socket (Linux), else None."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    return int(pid)
