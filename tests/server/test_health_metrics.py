"""GET /healthz, GET /readyz and GET /metrics (Prometheus text, read back with prometheus-client's
own parser): each number is the count of what the test did, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from storage.sqlite.store import SQLiteStore
from tests.server.conftest import APP_ID, Gateway, StartGateway
from tests.server.fake_alipay import FakeAlipay, rejected, transient
from tests.server.notifications import post, signed, stranger_key, trade_fields
from tests.server.send_fixtures import Sending, start_sending

UNKNOWN_APP_ID = "2021000000009999"


@pytest.fixture
async def sending(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Sending:
    return await start_sending(start_gateway, tmp_path, fake)


async def scrape(gateway: Gateway) -> dict[str, list[Sample]]:
    """Samples by metric family name, parsed by prometheus-client."""
    response = await gateway.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def values(samples: list[Sample], suffix: str = "") -> dict[tuple[str, ...], float]:
    """{label values: value} of the samples named ``<family><suffix>``."""
    name = {sample.name for sample in samples if sample.name.endswith(suffix)}
    return {
        tuple(sample.labels.values()): sample.value
        for sample in samples
        if sample.name in name and not sample.name.endswith("_created")
    }


async def test_healthz_answers_200_while_the_process_is_up(gateway: Gateway) -> None:
    response = await gateway.client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_answers_200_when_the_store_answers_and_keys_are_loaded(
    gateway: Gateway,
) -> None:
    response = await gateway.client.get("/readyz")
    body = await response.json()

    assert response.status == 200
    assert body["status"] == "ready"
    assert body["checks"]["store"] == "ok" and body["checks"]["apps"] == 2


async def test_readyz_answers_503_storage_unavailable_when_the_store_does_not_answer(
    gateway: Gateway,
) -> None:
    await gateway.store.close()

    ready = await gateway.client.get("/readyz")
    alive = await gateway.client.get("/healthz")

    assert ready.status == 503
    assert await ready.json() == {
        "status": "unready",
        "checks": {"apps": 2, "store": "storage_unavailable"},
    }
    assert alive.status == 200


async def test_a_closed_store_refuses_a_notification_with_503_rather_than_hanging(
    gateway: Gateway,
) -> None:
    await gateway.store.close()

    answer = await post(gateway.client, signed(trade_fields()))

    assert answer == (503, "storage_unavailable", b"fail")


async def test_metrics_count_accepted_notifications_by_app_kind_and_result(
    gateway: Gateway,
) -> None:
    first, second = signed(trade_fields()), signed(trade_fields())
    for fields in (first, second, first):
        assert (await post(gateway.client, fields))[0] == 200

    metrics = await scrape(gateway)

    assert values(metrics["subgate_notifications_accepted"], "_total") == {
        (APP_ID, "trade_status_sync", "stored"): 2,
        (APP_ID, "trade_status_sync", "duplicate"): 1,
    }


async def test_metrics_count_refused_notifications_by_reason_and_error_answers_by_code(
    gateway: Gateway,
) -> None:
    tampered = {**signed(trade_fields()), "total_amount": "999.00"}
    forged = signed(trade_fields(), key=stranger_key())
    unknown = signed(trade_fields(UNKNOWN_APP_ID))
    for fields in (tampered, forged, unknown):
        assert (await post(gateway.client, fields))[0] == 403
    assert (await post(gateway.client, {}, body=b"%zz"))[0] == 400
    assert (await gateway.client.get(f"/v1/apps/{APP_ID}/users/u/subscriptions")).status == 401

    metrics = await scrape(gateway)

    assert values(metrics["subgate_notifications_refused"], "_total") == {
        (APP_ID, "bad_signature"): 2,
        ("-", "unknown_app"): 1,
        ("-", "malformed"): 1,
    }
    assert values(metrics["subgate_error_answers"], "_total") == {
        ("bad_signature",): 2,
        ("unknown_app",): 1,
        ("malformed",): 1,
        ("unauthorized",): 1,
    }


async def test_metrics_show_messages_by_channel_and_status_and_the_outbox_depth(
    sending: Sending,
) -> None:
    sending.fake.script(
        "alipay.open.app.mini.templatemessage.send", rejected("USER_TEMPLATE_ILLEGAL"), transient()
    )
    await sending.give_credits(3)
    # failed (its credit refunded), queued, sent, sent on the refunded credit, no credit left
    answers = [await sending.send() for _ in range(5)]

    metrics = await scrape(sending.gateway)

    assert [a.status for a in answers] == [200, 202, 200, 200, 403]
    assert values(metrics["subgate_messages"]) == {
        ("mini_template", "failed"): 1,
        ("mini_template", "queued"): 1,
        ("mini_template", "sent"): 2,
    }
    assert values(metrics["subgate_outbox_depth"]) == {(): 1}
    assert values(metrics["subgate_error_answers"], "_total") == {("consent_required",): 1}


async def test_metrics_show_one_commit_latency_observation_per_write_batch(
    gateway: Gateway,
) -> None:
    for _ in range(3):
        assert (await post(gateway.client, signed(trade_fields())))[0] == 200
    store = gateway.store
    assert isinstance(store, SQLiteStore)

    metrics = await scrape(gateway)
    histogram = metrics["subgate_store_commit_seconds"]

    count = values(histogram, "_count")[()]
    assert count == store.writer.batches >= 3
    assert 0 < values(histogram, "_sum")[()] < count * 1.0
    buckets: dict[tuple[str, ...], Any] = values(histogram, "_bucket")
    assert buckets[("+Inf",)] == count


async def test_metrics_show_how_long_the_store_took_to_answer_a_read(gateway: Gateway) -> None:
    metrics = await scrape(gateway)

    [sample] = metrics["subgate_store_read_seconds"]
    assert 0 < sample.value < 5
