"""The event log every Store backend keeps: each event written with its cause, once, and read
back in one order, a page at a time."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from storage import Store
from storage.errors import ConsentRequired
from storage.models import (
    START,
    AttemptOutcome,
    AttemptResult,
    ConsentState,
    EventType,
    SendReservation,
    StoredEvent,
    SubscribeReport,
    TemplateKind,
)
from storage.timecodec import to_millis
from tests.storage.event_log import ALL_TYPES, log, settled
from tests.storage.postgres_env import connect_admin
from tests.storage.records import (
    APP,
    NOW,
    TEMPLATE,
    USER,
    accept,
    follow,
    notification,
    reservation,
)

OTHER_APP = "2021000000000002"
RECEIVED, CHANGED, UPDATED = EventType


def keys_of(events: list[StoredEvent]) -> list[str]:
    """The dedupe key of each event's notification ("-" for an event of another type)."""
    return [e.notification.dedupe_key if e.notification else "-" for e in events]


def long_term(key: str) -> SendReservation:
    """A send against a long-term subscription: no credit runs out."""
    return reservation(key, template_id="T-long", kind=TemplateKind.LONG_TERM)


async def test_a_notification_has_one_received_event_however_often_it_arrives(
    store: Store,
) -> None:
    await asyncio.gather(
        *(store.record_notification(notification("n-1")) for _ in range(5)),
        *(store.record_notification(notification("n-2"), [follow()]) for _ in range(5)),
    )

    events = await log(store)

    received = [e for e in events if e.type is RECEIVED]
    assert sorted(keys_of(received)) == ["n-1", "n-2"]
    for event in received:
        assert event.notification is not None
        stored = await store.get_notification(APP, event.notification.dedupe_key)
        assert event.notification == stored
        assert (event.app_id, event.user_id, event.kind) == (APP, None, "trade_status_sync")
        assert (event.created_at, event.data) == (stored.received_at, None)
    assert [e.type for e in events].count(CHANGED) == 1  # the follow, applied once


async def test_notifications_written_in_chunks_each_get_their_own_event(store: Store) -> None:
    """Many at once are written in chunks on SQLite (one statement each, ids counted from the
    last rowid): the trigger's rows in between must change neither the ids nor the events."""
    keys = [f"n-{i}" for i in range(150)] + [f"n-{i}" for i in range(0, 150, 7)]

    outcomes = await asyncio.gather(*(store.record_notification(notification(k)) for k in keys))

    events = {e.notification.id: e for e in await log(store) if e.notification}
    assert len(events) == 150
    for key, outcome in zip(keys, outcomes, strict=True):
        stored = await store.get_notification(APP, key)
        assert stored is not None and outcome.notification_id == stored.id
        assert events[stored.id].notification == stored
    assert sum(not o.duplicate for o in outcomes) == 150


async def test_a_write_that_is_rolled_back_leaves_no_event(store: Store) -> None:
    def failing_answer(report_id: int, states: list[ConsentState]) -> str:
        raise RuntimeError("the answer could not be built")

    body = '{"accept":["T-one-time"]}'
    report = SubscribeReport(
        app_id=APP,
        user_id=USER,
        idempotency_key="report-1",
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        body=body,
        received_at=NOW,
    )

    with pytest.raises(RuntimeError):
        await store.record_subscribe_report(report, [accept(1)], failing_answer)
    with pytest.raises(ConsentRequired):
        await store.reserve_send(reservation("k-1"))

    assert await store.consent_events(APP) == []
    assert await store.count_messages() == 0
    assert await log(store) == []
    assert await store.last_event_position() == START


async def test_each_appended_consent_event_is_one_consent_changed_event(store: Store) -> None:
    recorded = NOW + timedelta(hours=1)

    await store.append_consent_events([accept(1), accept(2), accept(3, user_id="2088B")], recorded)

    events = await log(store)
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    [other] = await store.consent_history(APP, "2088B", "mini_template", TEMPLATE)
    appended = [(history[0], 1), (history[1], 2), (other, 1)]
    assert [e.type for e in events] == [CHANGED] * 3
    assert [e.user_id for e in events] == [USER, USER, "2088B"]
    assert {e.created_at for e in events} == {recorded}
    assert [e.data for e in events] == [
        {
            "channel": "mini_template",
            "template_id": TEMPLATE,
            "status": "subscribed",
            "credits": credits,
            "action": "accept",
            "source": "client_report",
            "occurred_at": to_millis(event.occurred_at),
            "sequence": event.id,
        }
        for event, credits in appended
    ]


async def test_a_late_consent_event_reports_itself_and_the_state_refolded(store: Store) -> None:
    await store.append_consent_events([accept(5)], NOW)

    [state] = await store.append_consent_events([accept(1, evidence="late")], NOW)

    [_, late] = await log(store)
    [event] = [
        e
        for e in await store.consent_history(APP, USER, "mini_template", TEMPLATE)
        if e.evidence == "late"
    ]
    assert late.data is not None
    assert (late.data["sequence"], late.data["occurred_at"]) == (
        event.id,
        to_millis(NOW + timedelta(minutes=1)),
    )
    assert (late.data["status"], late.data["credits"]) == (state.status.value, state.credits)
    assert state.credits == 2


async def test_a_key_saved_before_its_row_named_its_entry_announces_its_next_change(
    store: Store, backend: str, store_url: str
) -> None:
    """Rows saved before migration 0013 have no ``changed_by``: their next save names its entry."""
    await store.append_consent_events([accept(1)], NOW)
    await forget_changed_by(backend, store_url)

    await store.append_consent_events([accept(2)], NOW)

    [_, second] = await log(store)
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    assert second.data is not None
    assert (second.data["sequence"], second.data["credits"]) == (history[-1].id, 2)


async def forget_changed_by(backend: str, store_url: str) -> None:
    forget = "UPDATE consents SET changed_by = NULL"  # fires no trigger: nothing else changes
    if backend == "sqlite":
        connection = sqlite3.connect(urlsplit(store_url).path, timeout=5)
        with connection:
            connection.execute(forget)
        connection.close()
        return
    admin = await connect_admin(store_url)
    try:
        await admin.execute(forget)
    finally:
        await admin.close()


async def test_a_message_reports_each_outcome_but_not_its_way_there(store: Store) -> None:
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    first = (await store.reserve_send(long_term("k-1"))).message  # pending
    soon, later = first.created_at + timedelta(minutes=2), first.created_at + timedelta(hours=1)
    await store.begin_attempt(first.id, "worker-a", first.created_at, soon)  # sending
    retry = AttemptResult(outcome=AttemptOutcome.RETRY, next_attempt_at=soon)
    await store.finish_attempt(first.id, retry, first.created_at)  # queued
    await store.claim_due_messages("worker-b", soon, later, 10)
    await store.begin_attempt(first.id, "worker-b", soon, later)  # sending again
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000", platform_msg="ok")
    done = await store.finish_attempt(first.id, sent, soon)  # sent
    second = (await store.reserve_send(long_term("k-2"), begin=True)).message
    rejected = AttemptResult(outcome=AttemptOutcome.REJECTED, sub_code="isv.bad")
    await store.finish_attempt(second.id, rejected, soon)  # failed
    third = (await store.reserve_send(long_term("k-3"), begin=True)).message
    await store.abandon_in_flight(later)  # unknown

    await settled(store)
    events = await store.events_after(APP, START, 100, [UPDATED])

    assert [(e.data or {}).get("message_id") for e in events] == [first.id] * 2 + [
        second.id,
        third.id,
    ]
    assert [(e.data or {}).get("status") for e in events] == ["queued", "sent", "failed", "unknown"]
    assert events[1].data == {
        "message_id": first.id,
        "channel": "mini_template",
        "template_id": "T-long",
        "status": "sent",
        "attempts": 2,
        "platform_code": "10000",
        "platform_msg": "ok",
        "sub_code": None,
        "sub_msg": None,
    }
    assert (events[1].user_id, events[1].kind, events[1].created_at) == (
        USER,
        None,
        done.updated_at,
    )


async def test_the_feed_reads_an_apps_events_in_order_a_page_at_a_time(store: Store) -> None:
    await store.record_notification(notification("n-1"))
    await store.append_consent_events([accept(1)], NOW)
    await store.record_notification(notification("n-other", app_id=OTHER_APP))
    await store.record_notification(notification("n-2"), [accept(2)])
    events = await log(store)

    pages, after = [], START
    while page := await store.events_after(APP, after, 2, ALL_TYPES):
        pages.append(page)
        after = page[-1].position

    assert [e.type for e in events] == [RECEIVED, CHANGED, RECEIVED, CHANGED]
    assert keys_of(events) == ["n-1", "-", "n-2", "-"]
    assert [len(page) for page in pages] == [2, 2]
    assert [e for page in pages for e in page] == events
    assert [e.position for e in events] == sorted({e.position for e in events})
    assert keys_of(await log(store, OTHER_APP)) == ["n-other"]


async def test_the_feed_takes_only_the_types_asked_for(store: Store) -> None:
    await store.record_notification(notification("n-1"), [accept(1)])
    everything = await log(store)

    only = await store.events_after(APP, START, 10, [CHANGED])
    named = await store.events_after(APP, START, 10, [*ALL_TYPES, "no.such.type"])

    assert [e.type for e in only] == [CHANGED]
    assert named == everything and len(everything) == 2
    assert await store.events_after(APP, START, 10, ["no.such.type"]) == []
    assert await store.events_after(APP, START, 10, []) == []


async def test_any_event_is_found_by_id_and_the_last_position_is_the_newest(
    store: Store,
) -> None:
    assert await store.last_event_position() == START
    await store.record_notification(notification("n-other", app_id=OTHER_APP))
    await store.record_notification(notification("n-1"))

    [event] = await log(store)
    [other] = await log(store, OTHER_APP)

    assert await store.last_event_position() == event.position
    assert other.position < event.position
    assert await store.event_by_id(event.id) == event
    assert await store.event_by_id(other.id) == other
    assert await store.event_by_id(event.id + 1000) is None


async def test_an_event_outlives_its_pruned_notification(store: Store) -> None:
    old = notification("old").model_copy(update={"occurred_at": NOW - timedelta(days=30)})
    await store.record_notification(old)

    assert await store.prune_notifications(NOW - timedelta(days=1)) == 1

    [event] = await log(store)
    assert (event.type, event.kind, event.notification) == (RECEIVED, "trade_status_sync", None)
