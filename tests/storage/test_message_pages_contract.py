"""A listing of an app's messages, on every Store backend: newest first, a page at a time by
keyset (never a message skipped or shown twice), filtered by status and channel, one app's only."""

from __future__ import annotations

from datetime import timedelta

from storage import Store
from storage.models import AttemptOutcome, AttemptResult, MessageRecord, TemplateKind
from tests.storage.records import NOW, accept, reservation

LONG = "T-long"


async def sent_messages(store: Store, count: int, app_id: str = "2021000000000001") -> list[str]:
    """``count`` messages, created a minute apart (two of them at the same instant)."""
    await store.append_consent_events([accept(template_id=LONG, app_id=app_id)], NOW)
    ids = []
    for i in range(count):
        created = NOW + timedelta(hours=1, minutes=min(i, count - 2))  # the last two tie
        wanted = reservation(
            f"k-{i}",
            template_id=LONG,
            kind=TemplateKind.LONG_TERM,
            created_at=created,
            app_id=app_id,
        )
        outcome = await store.reserve_send(wanted)
        ids.append(outcome.message.id)
    return ids


def newest_first(messages: list[MessageRecord]) -> list[str]:
    return [m.id for m in sorted(messages, key=lambda m: (m.created_at, m.id), reverse=True)]


async def test_pages_walk_every_message_newest_first_once(store: Store) -> None:
    await sent_messages(store, 7)
    everything = await store.app_messages_page("2021000000000001", 100)

    pages, below = [], None
    while True:
        page = await store.app_messages_page("2021000000000001", 3, below=below)
        pages.append([m.id for m in page])
        if len(page) < 3:
            break
        below = (page[-1].created_at, page[-1].id)

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == newest_first(everything) == [m.id for m in everything]
    assert len(everything) == 7


async def test_a_status_filter_shows_only_the_messages_in_it(store: Store) -> None:
    ids = await sent_messages(store, 4)
    later = NOW + timedelta(hours=2)
    for message_id in ids[1:3]:
        await store.begin_attempt(message_id, "worker-a", later, later + timedelta(minutes=1))
        result = AttemptResult(outcome=AttemptOutcome.UNKNOWN, error="no answer")
        await store.finish_attempt(message_id, result, later)

    unknown = await store.app_messages_page("2021000000000001", 10, status="unknown")
    pending = await store.app_messages_page("2021000000000001", 10, status="pending")

    assert sorted(m.id for m in unknown) == sorted(ids[1:3])
    assert {m.status for m in unknown} == {"unknown"}
    assert sorted(m.id for m in pending) == sorted([ids[0], ids[3]])


async def test_channel_filters_and_other_apps_are_kept_apart(store: Store) -> None:
    ours = await sent_messages(store, 2)
    await sent_messages(store, 2, app_id="2021000000000002")

    mine = await store.app_messages_page("2021000000000001", 10, channel="mini_template")
    both = await store.app_messages_page(
        "2021000000000001", 10, status="pending", channel="mini_template"
    )

    assert sorted(m.id for m in mine) == sorted(m.id for m in both) == sorted(ours)
    assert await store.app_messages_page("2021000000000001", 10, channel="jym_push") == []
    assert await store.app_messages_page("2021000000000003", 10) == []
