"""The worker wire format: what a frame can hold, the shape of each message kind, and that a
decoded frame never constructs an object."""

from __future__ import annotations

import asyncio
import socket
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import aiohttp
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.platforms.calls import CallOutcome, CallResult
from server.workers.call_process import _PrimaryConnection
from server.workers.plain import JSON_DEPTH
from server.workers.relay_client import RelayClient
from server.workers.wire import (
    CALL_ANSWERS,
    CALL_REQUESTS,
    MAX_ITEMS,
    RECORD_FIELDS,
    RELAY_REQUESTS,
    FrameReader,
    Message,
    RelayError,
    decode_message,
    encode_frame,
    parse_payload,
    record_from_values,
    record_values,
    relay_answer,
)
from storage.errors import StorageUnavailable
from storage.models import NotificationRecord

LIMIT = 1024 * 1024
TIMESTAMP = b"\xd6\xff\x00\x00\x00\x01"  # MessagePack's timestamp extension: 1 s after the epoch
EXTENSION = b"\xd4\x05\x01"  # extension type 5, one byte of data


def test_the_wire_record_is_the_stored_record_field_for_field() -> None:
    assert tuple(NotificationRecord.model_fields) == RECORD_FIELDS


# Any instant a record can hold, in any offset (a record keeps it as UTC milliseconds).
instants = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5))]),
)


@given(
    record=st.builds(
        NotificationRecord,
        app_id=st.text(),
        dedupe_key=st.text(),
        kind=st.text(),
        handler=st.text(),
        raw_body=st.binary(max_size=4096),
        charset=st.text(),
        sign_type=st.text(),
        rule=st.text(),
        key_label=st.text(),
        occurred_at=st.none() | instants,
        received_at=instants,
    )
)
def test_every_field_of_a_record_crosses_the_wire_unchanged(record: NotificationRecord) -> None:
    [(_, _, values)] = FrameReader(LIMIT).feed(encode_frame((1, "keep", record_values(record))))

    received = record_from_values(values)

    assert received == record
    assert [getattr(received, name) for name in RECORD_FIELDS] == [
        getattr(record, name) for name in RECORD_FIELDS
    ]


class _Spy:
    def __init__(self) -> None:
        self.made: list[object] = []

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.made.append(args)


@pytest.mark.parametrize("value", [TIMESTAMP, EXTENSION, b"\xc7\x00\x05"])
def test_an_extension_type_is_refused_and_constructs_nothing(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy()
    monkeypatch.setattr(msgpack.Timestamp, "__init__", spy)
    monkeypatch.setattr(msgpack.ExtType, "__new__", spy)
    msgpack.unpackb(value)  # the decoder's defaults would construct one
    assert len(spy.made) == 1

    with pytest.raises(RelayError, match="undecodable"):
        FrameReader(LIMIT).feed(b"\x93\x01\xa4keep" + value)

    assert len(spy.made) == 1


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 12, 5, tzinfo=UTC), object(), {1, 2}, 2**64],
)
def test_a_value_the_wire_does_not_carry_is_refused_when_encoded(value: object) -> None:
    with pytest.raises(RelayError, match="not a plain value"):
        encode_frame((1, "keep", value))

    assert decode_message(encode_frame((1, "keep", b"ok"))) == (1, "keep", b"ok")


def good_record() -> tuple[Any, ...]:
    return record_values(
        NotificationRecord(
            app_id="2021000000000001",
            dedupe_key="n-1",
            kind="trade_status_sync",
            handler="store_only",
            raw_body=b"notify_id=n-1",
            charset="utf-8",
            sign_type="RSA2",
            rule="V1",
            key_label="key:sha256:0123456789abcdef",
            occurred_at=None,
            received_at=datetime(2026, 12, 5, tzinfo=UTC),
        )
    )


def with_field(name: str, value: object) -> tuple[Any, ...]:
    values = list(good_record())
    values[RECORD_FIELDS.index(name)] = value
    return tuple(values)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("keep", (with_field("raw_body", "text, not bin"), ())),
        ("keep", (with_field("app_id", b"bin, not text"), ())),
        ("keep", (with_field("received_at", True), ())),  # a boolean is not an integer here
        ("keep", (with_field("received_at", 1.0), ())),
        ("keep", (good_record()[:-1], ())),  # a field short
        ("keep", ((*good_record(), None), ())),  # a field over
        ("keep", (good_record(), ({"app_id": 1},))),  # an event's value is not text
        ("keep", (good_record(),)),
        ("refusals", (("-", "unknown_app", "4"),)),
        ("refusals", (("-", "unknown_app"),)),
        ("errors", (("unknown_app", None),)),
        ("ready", True),
        ("ready", "4242"),
        ("hello", (2, "app_id")),
        ("goodbye", None),
    ],
)
def test_a_relay_request_of_another_shape_is_refused(kind: str, payload: object) -> None:
    with pytest.raises(RelayError):
        parse_payload(RELAY_REQUESTS, kind, payload)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


@pytest.mark.parametrize(
    "payload",
    [
        ("app", "method", {"to_user_id": b"bin"}, 0),  # bin is not JSON
        ("app", "method", {"list": (1, b"bin")}, 0),
        ("app", "method", nested(JSON_DEPTH + 1), 0),
        ("app", "method", (), 0),  # biz_content is a map
        ("app", "method", {}, 2**63 - 1),  # past datetime's range
        ("app", "method", {}),
        (b"app", "method", {}, 0),
    ],
)
def test_a_call_request_of_another_shape_is_refused(payload: object) -> None:
    with pytest.raises(RelayError):
        parse_payload(CALL_REQUESTS, "call", payload)


def test_a_call_request_reads_as_the_json_it_was_and_the_primarys_clock() -> None:
    biz = {"template_id_list": ["a", "b"], "data": {"n": [1, 2.5, None, True]}}
    [(_, kind, payload)] = FrameReader(LIMIT).feed(
        encode_frame((1, "call", ("app", "method", biz, 1_000_001)))
    )

    app_id, method, received, when = parse_payload(CALL_REQUESTS, kind, payload)

    assert (app_id, method, received) == ("app", "method", biz)  # arrays are lists again
    assert isinstance(received["template_id_list"], list)
    assert when == datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)
    assert parse_payload(CALL_REQUESTS, "call", ("a", "m", nested(JSON_DEPTH), 0))


@pytest.mark.parametrize(
    ("kind", "payload"),
    [("ready", None), ("refused", 0), ("stopping", ()), ("answer", None), ("ok", None)],
)
def test_a_call_answer_of_another_shape_is_refused(kind: str, payload: object) -> None:
    with pytest.raises(RelayError):
        parse_payload(CALL_ANSWERS, kind, payload)


@pytest.mark.parametrize(
    ("op", "ok", "value"),
    [
        ("keep", True, (1,)),
        ("keep", True, (1, 0)),
        ("ready", True, 1),
        ("keep", None, "x"),
        ("keep", False, None),
    ],
)
def test_an_answer_of_another_shape_is_refused(op: str, ok: object, value: object) -> None:
    with pytest.raises(RelayError):
        relay_answer(op, ok, value)


def test_frames_up_to_the_limit_pass_however_the_reads_fall_beside_them() -> None:
    header = len(encode_frame((1, "keep", b"x" * 70_000))) - 70_000
    whole = encode_frame((1, "keep", b"x" * (LIMIT - header)))
    assert len(whole) == LIMIT
    reader = FrameReader(LIMIT)

    first = reader.feed(whole[: LIMIT // 2])
    rest = reader.feed(whole[LIMIT // 2 :] + whole + encode_frame((2, "ready", 7)))

    assert first == [] and len(rest) == 3 and rest[-1] == (2, "ready", 7)


def test_an_array_longer_than_any_of_the_protocol_is_refused_from_its_header() -> None:
    with pytest.raises(RelayError, match="max_array_len"):
        FrameReader(LIMIT).feed(b"\x93\x01\xa4keep\xdd" + struct.pack(">I", MAX_ITEMS + 1))


def test_a_frame_split_into_single_bytes_comes_out_once_whole() -> None:
    stream = encode_frame((1, "keep", b"x" * 5000)) + encode_frame((2, "ready", 7))
    reader = FrameReader(LIMIT)

    received = [message for byte in stream for message in reader.feed(bytes([byte]))]

    assert received == [(1, "keep", b"x" * 5000), (2, "ready", 7)]


async def test_a_malformed_answer_from_the_primary_ends_the_call_and_the_relay() -> None:
    ours, theirs = socket.socketpair()
    _, client = await asyncio.get_running_loop().create_connection(RelayClient, sock=ours)
    reader, primary = await asyncio.open_connection(sock=theirs)
    call = asyncio.ensure_future(client.call("keep", (good_record(), ())))
    [(seq, _, _)] = FrameReader(LIMIT).feed(await reader.read(65536))
    primary.write(encode_frame((seq, True, ("not", "an id"))))

    with pytest.raises(StorageUnavailable, match="closed"):
        await call
    await client.lost.wait()
    primary.close()


async def test_a_call_worker_closes_its_end_on_a_request_of_another_shape() -> None:
    ours, theirs = socket.socketpair()
    session = cast(aiohttp.ClientSession, None)  # never reached: nothing is called
    _, worker = await asyncio.get_running_loop().create_connection(
        lambda: _PrimaryConnection(session, {}, 1.0), sock=ours
    )
    reader, primary = await asyncio.open_connection(sock=theirs)
    [ready] = FrameReader(LIMIT).feed(await reader.read(65536))
    primary.write(encode_frame((1, "call", ("app", "m", b"bin", 0))))

    await worker.closed.wait()

    assert ready[1] == "ready" and not worker.work
    assert await reader.read() == b""  # the primary sees the end: its calls end unknown
    primary.close()


async def messages_until(reader: asyncio.StreamReader, count: int) -> list[Message]:
    frames, received = FrameReader(LIMIT), list[Message]()
    while len(received) < count:
        received += frames.feed(await reader.read(65536))
    return received


async def test_an_answer_the_wire_cannot_carry_reaches_the_primary_as_unknown() -> None:
    ours, theirs = socket.socketpair()
    session = cast(aiohttp.ClientSession, None)  # never reached: nothing is called
    _, worker = await asyncio.get_running_loop().create_connection(
        lambda: _PrimaryConnection(session, {}, 1.0), sock=ours
    )
    reader, primary = await asyncio.open_connection(sock=theirs)

    worker._answer(7, CallResult(CallOutcome.SUCCESS, node={"n": 2**70}))
    _, (number, kind, payload) = await messages_until(reader, 2)

    assert (number, kind) == (7, "answer")
    result = parse_payload(CALL_ANSWERS, kind, payload)
    assert result["outcome"] == "unknown" and "not a plain value" in result["error"]
    primary.close()
    worker.close()
