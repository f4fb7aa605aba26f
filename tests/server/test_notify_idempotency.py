"""Alipay re-sends until it reads `success`: each notification is stored once, and only durably.

`success` is only ever answered after the row is committed; a store that cannot commit answers
503 so that Alipay's retry, which carries the same notification, is stored later exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from tests.oracle import form_body
from tests.server.conftest import APP_ID, Gateway, StartGateway, make_settings
from tests.server.notifications import (
    digest_dedupe_key,
    life_account_fields,
    message_fields,
    post,
    signed,
    trade_fields,
)

USER_ID = "2088000000000001"


def follow(event: str = "follow") -> dict[str, str]:
    return signed(life_account_fields(event, USER_ID), rule="V2", charset="gbk")


async def post_gbk(gateway: Gateway, fields: dict[str, str]) -> tuple[int, str, bytes]:
    return await post(gateway.client, fields, charset="gbk", header_charset="GBK")


@contextmanager
def write_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another process holding the SQLite write lock (a backup, a migration, a stuck job)."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield blocker
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


async def test_the_same_notification_posted_twice_is_acknowledged_twice_and_stored_once(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields())

    first = await post(gateway.client, fields)
    second = await post(gateway.client, fields)

    assert first == second == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
    stored = await gateway.store.get_notification(APP_ID, fields["notify_id"])
    assert stored is not None and stored.fields == fields
    assert gateway.refusals() == {}


async def test_a_resend_with_a_new_notify_time_keeps_the_first_copy(gateway: Gateway) -> None:
    first = signed(trade_fields())
    later = gateway.clock.now + timedelta(minutes=4)
    resend = signed(trade_fields(when=later, notify_id=first["notify_id"]))
    assert resend["notify_time"] != first["notify_time"]

    answers = [await post(gateway.client, first), await post(gateway.client, resend)]

    assert answers == [(200, "", b"success")] * 2
    assert await gateway.store.count_notifications() == 1
    stored = await gateway.store.get_notification(APP_ID, first["notify_id"])
    assert stored is not None and stored.fields == first


async def test_fifty_concurrent_copies_are_all_acknowledged_and_stored_as_one_row(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields())

    answers = await asyncio.gather(*(post(gateway.client, fields) for _ in range(50)))

    assert answers == [(200, "", b"success")] * 50
    assert await gateway.store.count_notifications() == 1
    assert await gateway.store.get_notification(APP_ID, fields["notify_id"]) is not None


async def test_fifty_concurrent_distinct_notifications_are_all_stored(gateway: Gateway) -> None:
    notifications = [signed(trade_fields()) for _ in range(25)]
    notifications += [signed(message_fields(), rule="V2") for _ in range(25)]

    answers = await asyncio.gather(*(post(gateway.client, f) for f in notifications))

    assert answers == [(200, "", b"success")] * 50
    assert await gateway.store.count_notifications() == 50
    for fields in notifications:
        stored = await gateway.store.get_notification(APP_ID, fields["notify_id"])
        assert stored is not None and stored.fields == fields


async def test_a_follow_posted_three_times_records_exactly_one_consent_event(
    gateway: Gateway,
) -> None:
    fields = follow()

    answers = [await post_gbk(gateway, fields) for _ in range(3)]

    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][2] == answers[1][2] == answers[2][2]  # the same signed ack each time
    events = await gateway.store.consent_events(APP_ID, USER_ID)
    assert [event.action for event in events] == ["follow"]
    assert await gateway.store.count_notifications() == 1


async def test_concurrent_copies_of_a_follow_record_exactly_one_consent_event(
    gateway: Gateway,
) -> None:
    fields = follow()

    answers = await asyncio.gather(*(post_gbk(gateway, fields) for _ in range(20)))

    assert {status for status, _, _ in answers} == {200}
    assert len(await gateway.store.consent_events(APP_ID)) == 1


async def test_a_message_without_notify_id_is_deduplicated_by_the_digest_of_its_signed_content(
    gateway: Gateway,
) -> None:
    fields = follow()
    assert "notify_id" not in fields
    reordered = dict(reversed(list(fields.items())))  # same fields, another wire order
    assert form_body(reordered, "gbk") != form_body(fields, "gbk")

    first = await post_gbk(gateway, fields)
    second = await post_gbk(gateway, reordered)

    assert (first[0], second[0]) == (200, 200)
    assert await gateway.store.count_notifications() == 1
    key = digest_dedupe_key(fields, rule="V2", charset="gbk")
    stored = await gateway.store.get_notification(APP_ID, key)
    assert stored is not None and stored.fields == fields


async def test_messages_without_notify_id_that_differ_are_both_stored(gateway: Gateway) -> None:
    later = gateway.clock.now + timedelta(seconds=1)
    first = follow()
    second = signed(life_account_fields("follow", USER_ID, when=later), rule="V2", charset="gbk")

    assert (await post_gbk(gateway, first))[0] == 200
    assert (await post_gbk(gateway, second))[0] == 200

    assert await gateway.store.count_notifications() == 2
    assert len(await gateway.store.consent_events(APP_ID, USER_ID)) == 2


async def test_notifications_survive_a_restart_and_a_resend_after_it_stores_nothing_new(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    settings = make_settings(tmp_path)
    first = await start_gateway(settings)
    notifications = [signed(trade_fields()) for _ in range(30)]
    for fields in notifications:
        assert await post(first.client, fields) == (200, "", b"success")
    await first.client.close()

    second = await start_gateway(settings)

    assert second.db_path == first.db_path
    assert await second.store.count_notifications() == 30
    for fields in notifications:
        stored = await second.store.get_notification(APP_ID, fields["notify_id"])
        assert stored is not None and stored.fields == fields
    assert await post(second.client, notifications[7]) == (200, "", b"success")
    assert await second.store.count_notifications() == 30


async def test_consent_events_survive_a_restart_and_a_resent_follow_adds_none(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    settings = make_settings(tmp_path)
    first = await start_gateway(settings)
    fields = follow()
    assert (await post_gbk(first, fields))[0] == 200
    await first.client.close()

    second = await start_gateway(settings)
    assert (await post_gbk(second, fields))[0] == 200

    assert [event.action for event in await second.store.consent_events(APP_ID)] == ["follow"]


async def test_a_locked_database_answers_503_and_alipays_retry_is_stored_once(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields())

    with write_lock(gateway.db_path) as blocker:
        refused = await post(gateway.client, fields)
        assert refused == (503, "storage_unavailable", b"fail")
        assert await gateway.store.count_notifications() == 0
        blocker.execute("ROLLBACK")

    retried = await post(gateway.client, fields)

    assert retried == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
    stored = await gateway.store.get_notification(APP_ID, fields["notify_id"])
    assert stored is not None and stored.fields == fields
    assert gateway.refusals() == {(APP_ID, "storage_unavailable"): 1}


async def test_a_follow_refused_by_a_locked_database_records_its_event_only_on_retry(
    gateway: Gateway,
) -> None:
    fields = follow()

    with write_lock(gateway.db_path):
        refused = await post_gbk(gateway, fields)

    assert refused == (503, "storage_unavailable", b"fail")
    assert await gateway.store.consent_events(APP_ID) == []
    assert (await post_gbk(gateway, fields))[0] == 200
    assert len(await gateway.store.consent_events(APP_ID)) == 1
    assert await gateway.store.count_notifications() == 1


async def test_concurrent_copies_refused_by_a_locked_database_all_get_503(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields())

    with write_lock(gateway.db_path):
        answers = await asyncio.gather(*(post(gateway.client, fields) for _ in range(10)))

    assert answers == [(503, "storage_unavailable", b"fail")] * 10
    assert await gateway.store.count_notifications() == 0
    assert await post(gateway.client, fields) == (200, "", b"success")
    assert await gateway.store.count_notifications() == 1
