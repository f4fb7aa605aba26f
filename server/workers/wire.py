"""The wire format between the primary and its worker processes: a stream of MessagePack values,
decoded as they arrive into plain values only, and the shape of every message kind, checked before
anything acts on it.

Each frame is one MessagePack value (it delimits itself). Decoding yields nil, booleans, integers,
floats, str, bin, arrays (as tuples) and maps with str keys, and nothing else: every extension
type (the timestamp one included) is refused, and no hook builds an object, so a frame cannot
construct an object or run code by design. A message is ``[seq: int, kind: str | bool,
payload]``; ``kind`` names the shape of ``payload`` in one of the tables below (``RELAY_*``,
``CALL_*``) or in ``push_messages`` (``PUSH_*``, the push workers'). Times are integer
microseconds since the Unix epoch, bodies are bin. A frame that does not decode, is over its
reader's limit, or whose payload has another shape is a ``RelayError``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import msgpack

from server.workers.plain import (
    BOOL,
    BYTES,
    INT,
    NIL,
    NUMBER,
    OPTIONAL_STR,
    STR,
    Exactly,
    Parse,
    array,
    array_of,
    json_map,
    map_of,
    optional,
    struct_of,
)
from server.workers.plain import RelayError as RelayError
from storage.models import NotificationRecord

PROTOCOL_VERSION = 2


# A relayed frame carries one notification body (at most max_body_bytes) and its small
# metadata; anything larger than this is not the protocol.
FRAME_OVERHEAD_BYTES = 1024 * 1024

# The decoder allocates an array's slots when it reads its header, before their bytes arrive,
# and nests up to a thousand deep: this bounds what a few bytes of headers can make it allocate.
# No array or map of the protocol comes near it (the longest are a flush's refusal counts).
MAX_ITEMS = 4096

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Message = tuple[int, str | bool, Any]

# Every process encodes on its event loop's thread only, so one packer serves them all.
_PACKER = msgpack.Packer(use_bin_type=True, datetime=False)


def encode_frame(message: tuple[Any, ...]) -> bytes:
    """A value of another type than the plain ones above is refused here, as it would be there."""
    try:
        return _PACKER.pack(message)
    except (TypeError, ValueError, OverflowError) as error:
        _PACKER.reset()
        raise RelayError(f"not a plain value: {error}") from None


def _refuse_extension(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"extension type {code} is not the protocol")  # undecodable, as any other


def _decoding(limit: int) -> dict[str, Any]:
    """The decoder's settings: plain values only, none longer than a frame may be."""
    items = min(limit, MAX_ITEMS)
    return {
        "raw": False,
        "use_list": False,
        "strict_map_key": True,
        "ext_hook": _refuse_extension,
        "max_ext_len": 0,
        "max_str_len": limit,
        "max_bin_len": limit,
        "max_array_len": items,
        "max_map_len": items,
    }


def decode_message(frame: bytes) -> Message:
    """Exactly one whole frame, decoded as ``FrameReader`` decodes each."""
    try:
        message = msgpack.unpackb(frame, **_decoding(len(frame)))
    except Exception as error:  # whatever the bytes made of the decoder
        raise RelayError(f"undecodable frame: {type(error).__name__}: {error}") from None
    return _envelope(message)


def _envelope(message: object) -> Message:
    if type(message) is not tuple or len(message) != 3:
        raise RelayError("a frame is a (seq, kind, payload) triple")
    seq, kind, payload = message
    if type(seq) is not int or type(kind) not in (str, bool):
        raise RelayError("a frame's seq is an integer and its kind a str or a boolean")
    return seq, kind, payload


class FrameReader:
    """Decodes a byte stream into messages as it arrives. A frame longer than ``limit`` is
    refused once ``limit`` of its bytes are here, counting the ones the decoder has already
    turned into the frame's first items. Each read is copied once, into the decoder's buffer,
    and every frame in it decoded from there."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._fed = 0  # bytes given to the decoder
        self._whole = 0  # where the last whole frame ended
        self._decoder = msgpack.Unpacker(
            **_decoding(limit), max_buffer_size=limit, read_size=min(limit, 64 * 1024)
        )

    def feed(self, data: bytes) -> list[Message]:
        messages: list[Message] = []
        while data:  # more than once only when a read does not fit beside a partial frame
            room = self._limit - (self._fed - self._whole)
            if room <= 0:
                raise RelayError(f"a frame is over the limit of {self._limit} bytes")
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._decoder.feed(piece)
            self._fed += len(piece)
            self._decode(messages)
        return messages

    def _decode(self, messages: list[Message]) -> None:
        """Every whole frame fed; stops at the end of the bytes, without trying past it."""
        decoder = self._decoder
        while self._whole < self._fed:
            try:
                message = decoder.unpack()
            except msgpack.OutOfData:  # the rest of this frame is still on its way
                return
            except Exception as error:  # whatever the bytes made of the decoder
                raise RelayError(f"undecodable frame: {type(error).__name__}: {error}") from None
            messages.append(_envelope(message))
            self._whole = decoder.tell()


def micros(value: datetime) -> int:
    since = value - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def instant(value: object) -> datetime:
    """A time from the wire: integer microseconds since the epoch."""
    if type(value) is not int:
        raise RelayError("a time is an integer number of microseconds")
    try:
        return _EPOCH + timedelta(0, 0, value)  # (days, seconds, microseconds)
    except OverflowError:
        raise RelayError("a time is out of range") from None


# A notification record: an array of its fields in this order.
_RECORD_SHAPE: tuple[tuple[str, Parse], ...] = (
    ("app_id", STR),
    ("dedupe_key", STR),
    ("kind", STR),
    ("handler", STR),
    ("raw_body", BYTES),
    ("charset", STR),
    ("sign_type", STR),
    ("rule", STR),
    ("key_label", STR),
    ("occurred_at", optional(instant)),
    ("received_at", instant),
)
RECORD_FIELDS = tuple(name for name, _ in _RECORD_SHAPE)
_RECORD = struct_of(*_RECORD_SHAPE)


def record_values(record: NotificationRecord) -> tuple[Any, ...]:
    occurred = record.occurred_at
    return (
        record.app_id,
        record.dedupe_key,
        record.kind,
        record.handler,
        record.raw_body,
        record.charset,
        record.sign_type,
        record.rule,
        record.key_label,
        None if occurred is None else micros(occurred),
        micros(record.received_at),
    )


def record_from_values(values: object) -> NotificationRecord:
    """The record a worker built from verify/'s typed output; every field's type is checked,
    so that a bad one is refused alone and never fails the group commit it would join."""
    return NotificationRecord.model_construct(**_RECORD(values))


# Intake worker -> primary: [seq, op, payload]; a consent event is ConsentEvent's JSON dump.
RELAY_REQUESTS: Mapping[str, Parse] = {
    "hello": array(INT, array_of(STR)),  # [PROTOCOL_VERSION, RECORD_FIELDS]
    "keep": array(record_from_values, array_of(map_of(Exactly(str, bool, type(None))))),
    "refusals": array_of(array(STR, STR, INT)),  # [[app_id, reason, count], ...]
    "errors": array_of(array(STR, NUMBER)),  # [[error code, answers], ...]
    "cutoffs": array_of(array(STR, STR, INT)),  # [[kind, route or phase, count], ...]
    "ready": INT,  # the worker's pid
}
# Primary -> intake worker: [seq, ok, value]; value is the error message when ok is false,
# else the answer to the op of that seq.
RELAY_ANSWERS: Mapping[str, Parse] = {
    "hello": NIL,
    "keep": array(INT, BOOL),  # [notification_id, duplicate]
    "refusals": NIL,
    "errors": NIL,
    "cutoffs": NIL,
    "ready": NIL,
}
# Primary -> call worker: [number, "call", payload].
CALL_REQUESTS: Mapping[str, Parse] = {
    "call": array(STR, STR, json_map, instant),  # [app_id, method, biz_content, primary's now]
}
# Call worker -> primary: [number, kind, payload] (number 0 for "ready" and "stopping").
CALL_RESULT = struct_of(
    ("outcome", STR),
    ("code", OPTIONAL_STR),
    ("msg", OPTIONAL_STR),
    ("sub_code", OPTIONAL_STR),
    ("sub_msg", OPTIONAL_STR),
    ("error", OPTIONAL_STR),
    ("node", json_map),
)
CALL_ANSWERS: Mapping[str, Parse] = {
    "ready": INT,  # the worker's pid
    "answer": CALL_RESULT,
    "refused": NIL,  # a stopping worker did not make the call
    "stopping": NIL,
}


def parse_payload(shapes: Mapping[str, Parse], kind: object, payload: object) -> Any:
    """``payload`` as the value ``shapes`` gives for ``kind``; an unknown kind is refused."""
    shape = shapes.get(kind) if type(kind) is str else None
    if shape is None:
        raise RelayError(f"unknown kind {kind!r}")
    return shape(payload)


def relay_answer(op: str, ok: object, value: object) -> tuple[bool, Any]:
    """What the primary answered to ``op``: (True, the answer) or (False, its error message)."""
    if ok is False:
        return False, STR(value)
    if ok is not True:
        raise RelayError("an answer's kind is true or false")
    return True, parse_payload(RELAY_ANSWERS, op, value)


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
