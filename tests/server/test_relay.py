"""The intake relay between workers and the primary: its frames, and both ends on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from server.intake.gateway import StoreSink
from server.intake.refusals import RefusalCounter
from server.ops.metrics import Metrics
from server.settings import StorageSettings, TopAppSettings
from server.workers.relay import RelayServer, WorkerOrders
from server.workers.relay_client import RelayClient
from server.workers.supervision import RESTART_BACKOFF_SECONDS, next_restart_delay, worker_settings
from server.workers.wire import (
    PROTOCOL_VERSION,
    CoalescedWriter,
    FrameReader,
    Message,
    RelayError,
    decode_message,
    encode_frame,
    record_from_values,
    record_values,
)
from storage import Store, open_store
from storage.errors import StorageUnavailable
from storage.models import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    NotificationRecord,
    RecordOutcome,
)
from tests.server.conftest import make_settings

BEIJING = timezone(timedelta(hours=8))
LIMIT = 1024 * 1024


def record(dedupe_key: str = "n-1", occurred_at: datetime | None = None) -> NotificationRecord:
    return NotificationRecord(
        app_id="2021000000000001",
        dedupe_key=dedupe_key,
        kind="trade_status_sync",
        handler="store_only",
        raw_body=b"notify_id=n-1&sign=abc%2B",
        charset="utf-8",
        sign_type="RSA2",
        rule="V1",
        key_label="key:sha256:0123456789abcdef",
        occurred_at=occurred_at,
        received_at=datetime(2026, 12, 5, 10, 0, 0, 123000, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "occurred_at", [None, datetime(2026, 12, 5, 18, 0, 0, tzinfo=BEIJING), datetime(1999, 1, 1)]
)
def test_a_record_crosses_the_relay_unchanged_as_instants(occurred_at: datetime | None) -> None:
    if occurred_at is not None and occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    sent = record(occurred_at=occurred_at)

    frame = encode_frame((1, "keep", (record_values(sent), [])))
    [(_, _, (values, _))] = FrameReader(LIMIT).feed(frame)
    received = record_from_values(values)

    assert received == sent


@dataclass
class Exploit:
    marker: Path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_frame_that_would_construct_an_object_is_refused_and_runs_nothing(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps((1, "keep", Exploit(marker)))

    with pytest.raises(RelayError, match="undecodable"):
        decode_message(payload)
    with pytest.raises(RelayError):
        FrameReader(LIMIT).feed(payload)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x05K\x01a.",  # pickle: APPEND onto an int
        b"\x80\x05\x8e\xff\xff\xff\xff\xff\xff\xff\x3f.",  # pickle: BINBYTES8 of 2**62 bytes
        b"\x80\x02\x82\x01.",  # pickle: EXT1, a global by extension code
        b"\x80\x02P0\n.",  # pickle: PERSID
        b"",
        b"\xc1",  # the one byte MessagePack never uses
        b"\x93\x01\xa4keep",  # an array of 3 that ends after 2
        b"\x93\x01\xa4keep\xc0\xc0",  # a value after the message
        b"\x93\x01\xa2\xff\xfe\xc0",  # a str that is not UTF-8
        b"\x93\x01\xa4keep\x81\x01\xc0",  # a map keyed by an integer
        b"\x93\x01\xa4keep\xdd\xff\xff\xff\xff",  # an array of 2**32 - 1 in a 12-byte frame
        b"\x93\x01\xa4keep\xd6\xff\x00\x00\x00\x01",  # the timestamp extension
        b"\x93\x01\xa4keep\xc7\x00\x05",  # an empty extension of type 5
    ],
)
def test_a_malformed_frame_of_any_kind_is_a_relay_error(payload: bytes) -> None:
    with pytest.raises(RelayError, match="undecodable"):
        decode_message(payload)


@pytest.mark.parametrize(
    "message",
    [(1, "keep"), (1, "keep", None, None), "keep", 7, (True, "keep", None), (1, 2, None)],
)
def test_a_frame_that_is_not_a_triple_is_refused(message: object) -> None:
    with pytest.raises(RelayError, match=r"triple|seq"):
        decode_message(msgpack.packb(message))


def test_a_frame_longer_than_the_limit_is_refused_once_the_limit_has_arrived() -> None:
    reader = FrameReader(LIMIT)
    item = msgpack.packb(b"x" * (LIMIT // 4))  # already decoded items of the frame count too
    reader.feed(b"\x95" + item * 3)

    with pytest.raises(RelayError, match="over the limit"):
        reader.feed(item)


@given(
    messages=st.lists(
        st.tuples(st.integers(0, 2**40), st.text(max_size=8), st.binary(max_size=300)),
        min_size=1,
        max_size=12,
    ),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
)
def test_frames_come_out_whole_however_the_stream_is_cut(
    messages: list[tuple[int, str, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(message) for message in messages)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    reader = FrameReader(LIMIT)

    received = [
        message
        for start, end in itertools.pairwise(points)
        for message in reader.feed(stream[start:end])
    ]

    assert received == messages


@dataclass
class Ends:
    store: Store
    server: RelayServer
    client: RelayClient
    refusals: RefusalCounter
    metrics: Metrics
    ready: list[int]


@pytest.fixture
async def ends(tmp_path: Path) -> AsyncIterator[Ends]:
    store = await open_store(f"sqlite:///{tmp_path / 'relay.db'}")
    refusals, metrics, ready = RefusalCounter(), Metrics(), list[int]()
    server = RelayServer(
        StoreSink(store),
        refusals,
        metrics,
        max_body_bytes=65536,
        is_worker=lambda pid: pid == os.getpid(),  # the test plays the worker
        on_ready=ready.append,
    )
    await server.start(tmp_path / "relay.sock")
    client = await RelayClient.connect(tmp_path / "relay.sock")
    yield Ends(store, server, client, refusals, metrics, ready)
    client.close()
    await server.close()
    await store.close()


async def test_a_relayed_notification_is_stored_and_a_second_copy_is_a_duplicate(
    ends: Ends,
) -> None:
    first = await ends.client.keep(record(), [])
    again = await ends.client.keep(record(), [])

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.notification_id == first.notification_id
    assert await ends.store.get_notification("2021000000000001", "n-1") is not None


async def test_relayed_consent_events_are_stored_with_their_notification(ends: Ends) -> None:
    event = ConsentEvent(
        app_id="2021000000000001",
        user_id="2088000000000001",
        channel="life_account",
        template_id="account",
        action=ConsentAction.FOLLOW,
        occurred_at=datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
        source=ConsentSource.ALIPAY_NOTIFY,
        evidence="notify:n-1",
    )

    await ends.client.keep(record(), [event])

    assert await ends.store.consent_events("2021000000000001") == [event]


async def test_counts_and_readiness_reach_the_primary(ends: Ends) -> None:
    at = datetime(2026, 12, 5, tzinfo=UTC)

    await ends.client.add_refusals({("-", "unknown_app"): 4}, at)
    await ends.client.add_error_answers({"unknown_app": 4.0})
    await ends.client.ready(4242)

    assert ends.refusals.totals() == {("-", "unknown_app"): 4}
    await ends.refusals.flush(ends.store, at)
    assert [(c.reason, c.count) for c in await ends.store.refusal_counts()] == [("unknown_app", 4)]
    assert ends.metrics.error_answers.labels(code="unknown_app")._value.get() == 4.0
    assert ends.ready == [4242]


async def test_a_store_failure_reaches_the_worker_as_storage_unavailable(ends: Ends) -> None:
    writer = ends.store.writer  # type: ignore[attr-defined]
    await writer.maintain(lambda connection: connection.execute("PRAGMA query_only = 1"))

    with pytest.raises(StorageUnavailable, match="store unavailable"):
        await ends.client.keep(record(), [])
    assert await ends.store.count_notifications() == 0


@pytest.mark.parametrize(
    ("op", "payload"),
    [
        ("keep", ("not", "a record")),
        ("keep", ((1,) * 11, [])),
        ("unknown-op", None),
        ("hello", None),  # a second hello is just an unknown op
    ],
)
async def test_a_malformed_request_is_refused_and_the_connection_goes_on(
    ends: Ends, op: str, payload: object
) -> None:
    with pytest.raises(StorageUnavailable, match="refused the frame"):
        await ends.client.call(op, payload)

    assert (await ends.client.keep(record(), [])).duplicate is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_id", {"not": "text"}),
        ("dedupe_key", None),
        ("raw_body", "text, not bytes"),
        ("received_at", None),
        ("occurred_at", 2**63 - 1),  # past datetime's range (and 10**30 is past MessagePack's)
        ("occurred_at", 1.5),
    ],
)
async def test_a_badly_typed_record_is_refused_alone_and_never_fails_its_group_commit(
    ends: Ends, field: str, value: object
) -> None:
    names = list(NotificationRecord.model_fields)
    bad = list(record_values(record("bad")))
    bad[names.index(field)] = value

    answers: list[object] = await asyncio.gather(
        ends.client.call("keep", (tuple(bad), [])),
        ends.client.keep(record("good"), []),
        return_exceptions=True,
    )
    refused, good = answers

    assert isinstance(refused, StorageUnavailable) and "refused the frame" in str(refused)
    assert isinstance(good, RecordOutcome) and good.duplicate is False
    assert await ends.store.count_notifications() == 1


async def test_an_unexpected_failure_on_the_primary_is_answered_not_left_waiting(
    ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> RecordOutcome:
        raise AssertionError("a bug in the primary")

    monkeypatch.setattr(ends.store, "record_notification", broken)

    with pytest.raises(StorageUnavailable, match="failed to keep it"):
        await ends.client.keep(record(), [])


async def test_a_process_that_is_not_a_worker_is_refused_at_connect(
    ends: Ends, tmp_path: Path
) -> None:
    ends.server.is_worker = lambda pid: False

    with pytest.raises(StorageUnavailable, match="closed"):
        await RelayClient.connect(tmp_path / "relay.sock")


async def test_a_call_the_primary_never_answers_is_given_up_as_unavailable(
    ends: Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.workers.relay_client.CALL_TIMEOUT_SECONDS", 0.0)
    answered = asyncio.Event()

    async def stuck(*args: object) -> RecordOutcome:
        await answered.wait()
        raise AssertionError("never reached")

    monkeypatch.setattr(ends.store, "record_notification", stuck)

    with pytest.raises(StorageUnavailable, match="did not answer in time"):
        await ends.client.keep(record(), [])


def test_a_worker_that_ran_a_while_is_restarted_at_once_one_that_keeps_dying_backs_off() -> None:
    first, longest = RESTART_BACKOFF_SECONDS
    delays, delay = [], 0.0
    for _ in range(8):
        delay = next_restart_delay(0.5, delay)
        delays.append(delay)

    assert delays[0] == first and delays == sorted(delays) and delays[-1] == longest
    assert next_restart_delay(longest, longest) == 0.0


def test_workers_are_handed_no_api_token_top_secret_or_database_url(tmp_path: Path) -> None:
    token, top_secret, password = "t" * 32, "top-secret-0123456789", "db-password-0123456789"
    settings = make_settings(
        tmp_path,
        tokens=[{"token": token, "apps": ["*"], "scopes": ["read"]}],
        intake_workers=1,
        intake_port=9999,
    ).model_copy(
        update={
            "storage": StorageSettings(url=f"postgresql://subgate:{password}@db:5432/subgate"),
            "top_apps": [
                TopAppSettings(name="jym", app_key="12345678", app_secret=SecretStr(top_secret))
            ],
        }
    )

    orders = pickle.dumps(WorkerOrders(worker_settings(settings), tmp_path / "relay.sock", 20))

    for secret in (token, top_secret, password):
        assert secret.encode() not in orders
    assert settings.apps[0].app_private_key is not None  # what a worker does need: app keys
    handed = pickle.loads(orders).settings  # noqa: S301 (our own bytes)
    assert handed.apps == settings.apps and handed.server == settings.server


@pytest.mark.parametrize(
    "hello",
    [
        (PROTOCOL_VERSION + 1, tuple(NotificationRecord.model_fields)),
        (PROTOCOL_VERSION, tuple(reversed(NotificationRecord.model_fields))),
    ],
)
async def test_a_worker_of_another_version_is_refused_and_disconnected(
    ends: Ends, tmp_path: Path, hello: tuple[int, tuple[str, ...]]
) -> None:
    loop = asyncio.get_running_loop()
    _, other = await loop.create_unix_connection(RelayClient, str(tmp_path / "relay.sock"))

    with pytest.raises(StorageUnavailable, match="another version"):
        await other.call("hello", hello)
    await other.lost.wait()


async def test_nothing_is_kept_for_a_connection_that_did_not_say_hello(
    ends: Ends, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    _, rude = await loop.create_unix_connection(RelayClient, str(tmp_path / "relay.sock"))

    with pytest.raises(StorageUnavailable):
        await rude.keep(record(), [])
    await rude.lost.wait()
    assert await ends.store.count_notifications() == 0


async def test_when_the_primary_goes_away_the_worker_is_told_and_keeps_nothing(
    ends: Ends,
) -> None:
    await ends.server.close()
    await ends.client.lost.wait()

    with pytest.raises(StorageUnavailable, match="relay to the store is closed"):
        await ends.client.keep(record(), [])


class _CountedWrites:
    """A real socket transport whose writes are counted."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


async def _frames_until_eof(reader: asyncio.StreamReader) -> list[Message]:
    return FrameReader(1024).feed(await reader.read())


async def test_frames_of_one_turn_leave_in_one_write_and_closing_sends_the_rest_first() -> None:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    reader, peer = await asyncio.open_connection(sock=theirs)
    counted = _CountedWrites(transport)
    out = CoalescedWriter(counted)  # type: ignore[arg-type]

    for number in range(3):
        out.send(encode_frame((number, "call", None)))
    await asyncio.sleep(0)  # the turn ends
    assert counted.writes == 1
    out.send(encode_frame((3, "call", None)))
    out.close()  # in the same turn as the last frame

    assert await _frames_until_eof(reader) == [(n, "call", None) for n in range(4)]
    assert counted.writes == 2
    peer.close()
