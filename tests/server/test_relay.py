"""The intake relay between workers and the primary: its frames, and both ends on a real socket."""

from __future__ import annotations

import itertools
import os
import pickle
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.gateway import StoreSink
from server.metrics import Metrics
from server.refusals import RefusalCounter
from server.relay import (
    MAX_FRAME_BYTES,
    FrameReader,
    RelayClient,
    RelayError,
    RelayServer,
    decode_message,
    encode_frame,
    record_from_values,
    record_values,
)
from storage import Store, open_store
from storage.errors import StorageUnavailable
from storage.models import ConsentAction, ConsentEvent, ConsentSource, NotificationRecord

BEIJING = timezone(timedelta(hours=8))


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
    _, _, (values, _) = decode_message(FrameReader().feed(frame)[0])
    received = record_from_values(values)

    assert received == sent


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/subgate-relay-pwned",))


def test_a_frame_that_would_construct_an_object_is_refused_and_runs_nothing() -> None:
    payload = pickle.dumps((1, "keep", Exploit()))

    with pytest.raises(RelayError, match="plain values only"):
        decode_message(payload)
    assert not Path("/tmp/subgate-relay-pwned").exists()


@pytest.mark.parametrize("message", [(1, "keep"), [1, "keep", None], "keep", 7])
def test_a_frame_that_is_not_a_triple_is_refused(message: object) -> None:
    with pytest.raises(RelayError):
        decode_message(pickle.dumps(message))


def test_a_frame_longer_than_the_limit_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(RelayError, match="over the limit"):
        FrameReader().feed(struct.pack(">I", MAX_FRAME_BYTES + 1))


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
    reader = FrameReader()

    frames = [
        frame
        for start, end in itertools.pairwise(points)
        for frame in reader.feed(stream[start:end])
    ]

    assert [decode_message(frame) for frame in frames] == messages


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
    server = RelayServer(StoreSink(store), refusals, metrics, ready.append)
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


async def test_a_malformed_request_is_refused_and_the_connection_goes_on(ends: Ends) -> None:
    with pytest.raises(StorageUnavailable, match="refused the frame"):
        await ends.client.call("keep", ("not", "a record"))
    with pytest.raises(StorageUnavailable, match="refused the frame"):
        await ends.client.call("unknown-op", None)

    assert (await ends.client.keep(record(), [])).duplicate is False


async def test_when_the_primary_goes_away_the_worker_is_told_and_keeps_nothing(
    ends: Ends,
) -> None:
    await ends.server.close()
    await ends.client.lost.wait()

    with pytest.raises(StorageUnavailable, match="relay to the store is closed"):
        await ends.client.keep(record(), [])
