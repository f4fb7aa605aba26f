"""What the channels ask of every Store backend, on SQLite and on PostgreSQL (when
``SUBGATE_TEST_POSTGRES_URL`` names a server, as in CI): several recipients split by consent,
sends without a per-user check, a send limit per rolling window (under concurrency and across a
reopen), a refund for each recipient, recent ledger activity, and migration 0004's backfill."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import Store, open_store
from storage.errors import ConsentRequired, WeeklyLimitReached
from storage.ledger import fold
from storage.migrations import migrations_for
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    MessageStatus,
    SendReservation,
    SkippedRecipient,
    TemplateKind,
)
from tests.storage.postgres_env import fresh_schema, server_url

APP = "2021000000000001"
NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
WEEK = timedelta(days=7)

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'subgate.db'}"
        return
    async with fresh_schema(server_url()) as url:
        yield url


@pytest.fixture
async def store_factory(store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens the same database again and again (a reopen is what a restart does)."""
    opened: list[Store] = []

    async def factory() -> Store:
        store = await open_store(store_url, busy_timeout_ms=2000)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()


def opt_in(user: str, action: ConsentAction = ConsentAction.GRANT, **fields: Any) -> ConsentEvent:
    values: dict[str, Any] = {
        "app_id": APP,
        "user_id": user,
        "channel": "workcore",
        "template_id": "order_shipped",
        "action": action,
        "occurred_at": NOW - timedelta(days=1),
        "source": ConsentSource.OPERATOR,
        "evidence": f"form:{user}",
        **fields,
    }
    return ConsentEvent(**values)


def send(key: str, **options: Any) -> SendReservation:
    created = options.pop("created_at", NOW)
    values: dict[str, Any] = {
        "message_id": f"msg_{secrets.token_hex(8)}",
        "app_id": APP,
        "idempotency_key": key,
        "request_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "channel": "workcore_batch",
        "user_id": "1001",
        "template_id": "order_shipped",
        "kind": TemplateKind.LONG_TERM,
        "payload": "{}",
        "lease_owner": "worker-a",
        "lease_until": created + timedelta(minutes=1),
        "created_at": created,
        **options,
    }
    return SendReservation(**values)


def batch(key: str, *recipients: str) -> SendReservation:
    return send(
        key,
        user_id=recipients[0],
        recipients=recipients,
        consent_mode="split",
        ledger_channel="workcore",
        warnings=("a warning",),
    )


def label(
    key: str, created_at: datetime = NOW, limit: int | None = 3, **options: Any
) -> SendReservation:
    values: dict[str, Any] = {
        "channel": "life_label",
        "user_id": f"label:{key}",  # a key of its own: only the limit serialises these sends
        "template_id": "label_send",
        "kind": TemplateKind.UNKNOWN,
        "consent_mode": "none",
        "weekly_limit": limit,
        "created_at": created_at,
        **options,
    }
    return send(key, **values)


async def assert_projection_is_the_fold(store: Store) -> None:
    events = await store.consent_events(APP)
    keys = {(e.user_id, e.channel, e.template_id) for e in events}
    states = [s for user in {u for u, _, _ in keys} for s in await store.consent_states(APP, user)]
    assert {(s.user_id, s.channel, s.template_id) for s in states} == keys
    for state in states:
        history = await store.consent_history(APP, state.user_id, state.channel, state.template_id)
        assert state == fold(
            APP, state.user_id, state.channel, state.template_id, [(e, e.id) for e in history]
        )


async def actions(store: Store, user: str, channel: str = "workcore") -> list[str]:
    history = await store.consent_history(APP, user, channel, "order_shipped")
    return [event.action.value for event in history]


# -- recipients split by consent -------------------------------------------------------------


async def test_a_split_send_keeps_only_the_consenting_recipients(store: Store) -> None:
    later = NOW - timedelta(hours=1)
    await store.append_consent_events(
        [opt_in("1001"), opt_in("1003"), opt_in("1003", ConsentAction.REVOKE, occurred_at=later)],
        NOW,
    )

    outcome = await store.reserve_send(batch("k-1", "1002", "1001", "1003"))

    message = outcome.message
    assert (message.recipients, message.user_id) == (("1001",), "1001")
    assert message.skipped == (
        SkippedRecipient(user_id="1002", reason="consent_required"),
        SkippedRecipient(user_id="1003", reason="consent_required"),
    )
    assert (message.warnings, message.ledger_channel) == (("a warning",), "workcore")
    assert await store.get_message(APP, message.id) == message
    assert await actions(store, "1001") == ["grant", "spend"]
    assert await actions(store, "1003") == ["grant", "revoke"]
    assert await store.consent_states(APP, "1002") == []  # skipped: no empty projection left
    await assert_projection_is_the_fold(store)


async def test_a_split_send_with_no_consenting_recipient_writes_nothing(store: Store) -> None:
    await store.append_consent_events([opt_in("1001", ConsentAction.REVOKE)], NOW)

    with pytest.raises(ConsentRequired):
        await store.reserve_send(batch("k-1", "1001", "1002"))

    assert await store.count_messages() == 0
    assert [e.action for e in await store.consent_events(APP)] == ["revoke"]
    assert await store.consent_states(APP, "1002") == []


async def test_a_definite_failure_refunds_every_recipient(store: Store) -> None:
    await store.append_consent_events([opt_in("1001"), opt_in("1002")], NOW)
    message = (await store.reserve_send(batch("k-1", "1001", "1002"))).message
    started = await store.begin_attempt(message.id, "worker-a", NOW, NOW + timedelta(minutes=1))
    assert started is not None

    failed = await store.finish_attempt(
        message.id, AttemptResult(outcome=AttemptOutcome.REJECTED), NOW
    )

    assert failed.status is MessageStatus.FAILED
    for user in ("1001", "1002"):
        assert await actions(store, user) == ["grant", "spend", "refund"]
    await assert_projection_is_the_fold(store)


async def test_a_send_without_a_per_user_check_spends_on_its_own_key(store: Store) -> None:
    message = (await store.reserve_send(label("k-1"))).message

    assert message.recipients == ("label:k-1",)
    history = await store.consent_history(APP, "label:k-1", "life_label", "label_send")
    assert [(e.action.value, e.evidence) for e in history] == [("spend", f"message:{message.id}")]
    await assert_projection_is_the_fold(store)


async def test_a_single_recipient_send_keeps_its_recipient(store: Store) -> None:
    await store.append_consent_events([opt_in("1001")], NOW)

    message = (await store.reserve_send(send("k-1", channel="workcore"))).message

    assert (message.recipients, message.skipped, message.ledger_channel) == (
        ("1001",),
        (),
        "workcore",
    )
    with pytest.raises(ConsentRequired):
        await store.reserve_send(send("k-2", channel="workcore", user_id="1002"))


# -- the limit --------------------------------------------------------------------------------


async def test_the_limit_counts_the_rolling_window_and_names_the_retry_time(store: Store) -> None:
    for hour in range(3):
        await store.reserve_send(label(f"k-{hour}", NOW + timedelta(hours=hour)))
    await store.reserve_send(label("other-channel", channel="jym_push", limit=None))
    await store.reserve_send(label("other-app", app_id="2021000000000002"))

    with pytest.raises(WeeklyLimitReached) as refused:
        await store.reserve_send(label("k-3", NOW + WEEK - timedelta(milliseconds=1)))

    assert refused.value.retry_at == NOW + WEEK
    assert refused.value.refused_at == NOW + WEEK - timedelta(milliseconds=1)
    assert await store.count_messages() == 5
    await store.reserve_send(label("k-3", NOW + WEEK))  # the first has left the window
    with pytest.raises(WeeklyLimitReached) as again:
        await store.reserve_send(label("k-4", NOW + WEEK))
    assert again.value.retry_at == NOW + WEEK + timedelta(hours=1)


async def test_a_lowered_limit_waits_until_enough_have_left(store: Store) -> None:
    for hour in range(3):
        await store.reserve_send(label(f"k-{hour}", NOW + timedelta(hours=hour)))

    with pytest.raises(WeeklyLimitReached) as refused:
        await store.reserve_send(label("k-3", NOW + timedelta(hours=3), limit=1))

    assert refused.value.retry_at == NOW + WEEK + timedelta(hours=2)  # all three must leave


async def test_concurrent_sends_never_exceed_the_limit_and_a_reopen_remembers(
    store: Store, store_factory: StoreFactory
) -> None:
    results = await asyncio.gather(
        *(store.reserve_send(label(f"k-{n}", limit=4)) for n in range(10)),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, WeeklyLimitReached)]
    assert len(refused) == 6 and len(results) - len(refused) == 4
    assert await store.count_messages() == 4

    reopened = await store_factory()
    with pytest.raises(WeeklyLimitReached):
        await reopened.reserve_send(label("k-after", NOW + timedelta(days=1), limit=4))
    assert (await reopened.reserve_send(label("k-later", NOW + WEEK, limit=4))).replayed is False


async def test_a_replay_is_answered_whatever_the_limit(store: Store) -> None:
    first = await store.reserve_send(label("k-1", limit=1))

    replay = await store.reserve_send(label("k-1", limit=1, message_id=first.message.id))

    assert replay.replayed and replay.message == first.message


# -- recent ledger activity -------------------------------------------------------------------


async def test_recent_actions_count_what_happened_or_was_recorded_since(store: Store) -> None:
    def unfollow(user: str, occurred: datetime, **fields: Any) -> ConsentEvent:
        values: dict[str, Any] = {
            "app_id": APP,
            "user_id": user,
            "channel": "life_account",
            "template_id": "account",
            "action": ConsentAction.UNFOLLOW,
            "occurred_at": occurred,
            "source": ConsentSource.ALIPAY_NOTIFY,
            "evidence": f"notify:{user}",
            **fields,
        }
        return ConsentEvent(**values)

    await store.append_consent_events([unfollow("u1", NOW - timedelta(hours=30))], NOW - WEEK)
    since = NOW - timedelta(hours=24)

    async def count() -> int:
        return await store.recent_actions(APP, "life_account", ConsentAction.UNFOLLOW, since)

    assert await count() == 0
    await store.append_consent_events([unfollow("u2", NOW - timedelta(hours=30))], NOW)
    assert await count() == 1  # happened long ago, but recorded now
    await store.append_consent_events([unfollow("u3", since)], NOW - WEEK)
    assert await count() == 2  # happened at the very start of the window
    await store.append_consent_events(
        [
            unfollow("u4", NOW, action=ConsentAction.FOLLOW),
            unfollow("u5", NOW, app_id="2021000000000002"),
            unfollow("u6", NOW, channel="jym_push"),
        ],
        NOW,
    )
    assert await count() == 2


# -- migration 0004 ---------------------------------------------------------------------------

_OLD_ROW = (
    "INSERT INTO messages (id, app_id, idempotency_key, request_sha256, channel, user_id, "
    "template_id, payload, status, attempts, next_attempt_at, created_at, updated_at) "
    "VALUES ('msg_old', '{app}', 'k-old', 'x', 'mini_template', '2088000000000001', 'T', '{{}}', "
    "'sent', 1, 0, 0, 0)"
)


async def test_migration_0004_backfills_the_recipient_of_older_messages(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    first_three = [m for m in migrations_for(backend) if m.version <= 3]
    if backend == "sqlite":
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        connection.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for migration in first_three:
            connection.executescript(migration.sql)
            connection.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
        connection.execute(_OLD_ROW.format(app=APP))
        connection.commit()
        connection.close()
    else:
        pg = await asyncpg.connect(store_url)
        try:
            await pg.execute(
                "CREATE TABLE schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            for migration in first_three:
                await pg.execute(migration.sql)
                await pg.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, 0)",
                    migration.version,
                    migration.name,
                )
            await pg.execute(_OLD_ROW.format(app=APP))
        finally:
            await pg.close()

    store = await store_factory()  # applies 0004 and later
    message = await store.get_message(APP, "msg_old")

    assert message is not None
    assert (message.recipients, message.skipped, message.warnings) == (
        ("2088000000000001",),
        (),
        (),
    )
    assert message.ledger_channel == "mini_template"
    assert json.loads(message.payload) == {}
