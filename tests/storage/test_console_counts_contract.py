"""The overview's message totals (``0010_message_counts``) on every backend: kept by triggers
through every change the outbox makes (reserved, begun, finished, abandoned, settled), equal to
counting the messages themselves, exact under concurrent sends, and filled from the messages
already there when the migration is applied."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from storage import Store
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    MessageQuery,
    SendReservation,
    Settlement,
    SettleOutcome,
    TemplateKind,
)
from tests.storage.conftest import StoreFactory
from tests.storage.records import APP, NOW, accept, reservation
from tests.storage.test_console_reads_contract import OTHER_APP
from tests.storage.test_settle_migration import write_old_database

SENT_AT = NOW + timedelta(hours=1)  # when reservation() creates its messages
LATER = SENT_AT + timedelta(minutes=2)
LEASE = LATER + timedelta(minutes=5)
CHANNEL = "mini_template"


def long_term(key: str, app_id: str = APP) -> SendReservation:
    return reservation(key, template_id="T-long", kind=TemplateKind.LONG_TERM, app_id=app_id)


async def counted(store: Store, app_id: str = APP) -> dict[tuple[str, str], int]:
    """The app's messages counted one by one from their pages."""
    messages = await store.messages_page(app_id, MessageQuery(limit=1000))
    return dict(Counter((m.channel, m.status.value) for m in messages))


async def test_totals_follow_every_change_of_the_outbox(store: Store) -> None:
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    made = [(await store.reserve_send(long_term(f"k-{i}"), begin=i < 4)).message for i in range(6)]
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000")
    await store.finish_attempt(made[0].id, sent, LATER)
    await store.finish_attempt(made[0].id, sent, LATER)  # a second finish changes nothing
    await store.finish_attempt(made[1].id, AttemptResult(outcome=AttemptOutcome.REJECTED), LATER)
    await store.abandon_in_flight(LEASE)  # made[2] and made[3]: unknown
    settlement = Settlement(
        outcome=SettleOutcome.NOT_DELIVERED,
        reason="never arrived",
        settled_by="t",
        settled_at=LEASE,
    )
    await store.settle_message(APP, made[2].id, settlement)
    await store.claim_due_messages("worker-b", LEASE, LEASE + timedelta(minutes=1), 1)
    await store.begin_attempt(made[4].id, "worker-b", LEASE, LEASE + timedelta(minutes=1))

    totals = await store.message_counts_of_app(APP)

    assert totals == {
        (CHANNEL, "sent"): 1,
        (CHANNEL, "failed"): 1,
        (CHANNEL, "settled_not_delivered"): 1,
        (CHANNEL, "unknown"): 1,
        (CHANNEL, "sending"): 1,
        (CHANNEL, "pending"): 1,
    }
    assert totals == await counted(store)
    assert await store.message_counts_of_app(OTHER_APP) == {}


async def test_totals_are_exact_under_concurrent_sends(store: Store) -> None:
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    begun = await asyncio.gather(
        *(store.reserve_send(long_term(f"k-{i}"), begin=True) for i in range(30))
    )
    results = [AttemptOutcome.SENT, AttemptOutcome.REJECTED, AttemptOutcome.UNKNOWN]
    await asyncio.gather(
        *(
            store.finish_attempt(o.message.id, AttemptResult(outcome=results[i % 3]), LATER)
            for i, o in enumerate(begun)
        )
    )

    totals = await store.message_counts_of_app(APP)

    assert totals == {(CHANNEL, "sent"): 10, (CHANNEL, "failed"): 10, (CHANNEL, "unknown"): 10}
    assert totals == await counted(store)


async def test_messages_from_before_0010_are_counted(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    await write_old_database(backend, store_url)  # an unknown message under 0001-0006
    store = await store_factory()

    assert await store.message_counts_of_app(APP) == {(CHANNEL, "unknown"): 1}
