"""A PostgreSQL connection lost during COMMIT: the answer matches what was stored.

The store under test runs against the real server through ``CommitProxy``, which loses the
connection exactly at the COMMIT of a notification's transaction: before the server gets it
(nothing is stored) or after the server has committed it (stored, but the answer never reached
Subgate). In both cases Subgate asks again on a fresh connection, and answers from what it finds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from server.intake.keys import STORE_SINK
from server.settings import StorageSettings
from tests.server.conftest import Gateway, StartGateway, make_settings
from tests.server.notifications import post, signed, trade_fields
from tests.storage.pg_commit_proxy import CommitProxy, through_proxy
from tests.storage.postgres_env import fresh_schema, server_url


@pytest.fixture
async def proxy() -> AsyncIterator[CommitProxy]:
    upstream = urlsplit(server_url())
    proxy = CommitProxy(
        upstream.hostname or "127.0.0.1", upstream.port or 5432, b"INSERT INTO notifications"
    )
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def schema_url() -> AsyncIterator[str]:
    async with fresh_schema(server_url()) as url:
        yield url


@pytest.fixture
async def gateway(
    proxy: CommitProxy, schema_url: str, start_gateway: StartGateway, tmp_path: Path
) -> Gateway:
    """(In this order, so that the gateway closes before its schema and the proxy go.)"""
    storage = StorageSettings(url=through_proxy(schema_url, proxy.port), busy_timeout_ms=2000)
    settings = make_settings(tmp_path, refusal_flush_seconds=3600)
    return await start_gateway(settings.model_copy(update={"storage": storage}))


def stored_counts(gateway: Gateway) -> dict[str, int]:
    """What the gateway counted (and logged) as stored or duplicate, by result."""
    return {result: n for (_, _, result), n in gateway.app[STORE_SINK].accepted.items() if n}


async def test_a_commit_that_landed_is_answered_success_and_counted_once(
    gateway: Gateway, proxy: CommitProxy, caplog: pytest.LogCaptureFixture
) -> None:
    fields = signed(trade_fields())
    proxy.arm("after")

    with caplog.at_level(logging.INFO):
        status, code, body = await post(gateway.client, fields)

    assert proxy.dropped == 1
    assert (status, code, body) == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
    assert "commit lost; it was stored" in caplog.text
    assert stored_counts(gateway) == {"stored": 1}
    again = await post(gateway.client, fields)
    assert again == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
    assert stored_counts(gateway) == {"stored": 1, "duplicate": 1}


async def test_a_commit_that_never_reached_the_server_is_a_503_and_nothing_is_stored(
    gateway: Gateway, proxy: CommitProxy, caplog: pytest.LogCaptureFixture
) -> None:
    fields = signed(trade_fields())
    proxy.arm("before")

    with caplog.at_level(logging.WARNING):
        status, code, _ = await post(gateway.client, fields)

    assert proxy.dropped == 1
    assert (status, code) == (503, "storage_unavailable")
    assert await gateway.store.count_notifications() == 0
    assert "commit lost; it was not stored" in caplog.text
    assert stored_counts(gateway) == {}
    assert await post(gateway.client, fields) == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
    assert stored_counts(gateway) == {"stored": 1}
