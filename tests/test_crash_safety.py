"""Crash safety: a real Subgate process is killed with SIGKILL at random moments while signed
notifications and consent-gated sends arrive, restarted on the same SQLite file, and the file
is then checked against everything the clients were told.

The server is ``run.py serve`` in a subprocess; its app's ``gateway_url`` points at the fake
Alipay gateway running in this test process (it verifies every call with the official SDK and
records it). The kill moments come from a seeded RNG: random timing is the point, nothing here
waits on a timer to order events. Checks, after the last restart:

- every notification answered 200 is stored exactly once;
- no one-time credit was spent twice: per user, messages holding a credit <= accept events,
  every message has exactly one ``spend`` event, and the projection never goes below zero;
- no Idempotency-Key produced two platform calls (each send carries its key in ``page``);
- every stored projection equals the fold of its key's log.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage import open_store
from storage.ledger import fold
from storage.models import ConsentState
from tests.oracle import form_body
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import FakeAlipay, running_fake
from tests.server.notifications import (
    ALIPAY_CONTENT_TYPE,
    digest_dedupe_key,
    life_account_fields,
    signed,
    trade_fields,
)
from tests.server.send_fixtures import ONE_TIME, accepted_report
from tests.server.subgate_process import TOKEN, SubgateProcess

SEED = 20261123
KILLS = 4
USERS = [f"20881000000000{n:02d}" for n in range(1, 5)]
FOLLOWERS = [f"20882000000000{n:02d}" for n in range(1, 4)]
POOL_TRADES = 60
POOL_FOLLOWS = 12
NOTIFY_WORKERS = 3
DEADLINE_SECONDS = 50.0
HELD = ("pending", "queued", "sending", "sent", "unknown")  # statuses that keep a credit spent

# Every answer the clients accept as final; anything else (a 500, a refusal) fails the test.
NOTIFY_FINAL = {200}
SEND_FINAL = {200, 202, 403}


@dataclass(frozen=True)
class Notification:
    dedupe_key: str
    body: bytes
    content_type: str


def notification_pool() -> list[Notification]:
    """Trades (notify_id) and life-account follows/unfollows (digest), signed by the oracle."""
    now = datetime.now(UTC)
    pool = []
    for _ in range(POOL_TRADES):
        fields = signed(trade_fields(when=now))
        pool.append(
            Notification(
                fields["notify_id"], form_body(fields), ALIPAY_CONTENT_TYPE.format(charset="UTF-8")
            )
        )
    for index in range(POOL_FOLLOWS):
        event = "follow" if index % 3 else "unfollow"
        fields = signed(
            life_account_fields(
                event, FOLLOWERS[index % len(FOLLOWERS)], when=now - timedelta(seconds=index)
            ),
            rule="V2",
            charset="gbk",
        )
        pool.append(
            Notification(
                digest_dedupe_key(fields, rule="V2", charset="gbk"),
                form_body(fields, "gbk"),
                ALIPAY_CONTENT_TYPE.format(charset="GBK"),
            )
        )
    return pool


@dataclass
class Observed:
    """What the clients were told."""

    acknowledged: Counter[str] = field(default_factory=Counter)  # dedupe key -> 200 answers
    unavailable: int = 0  # connection errors and 503s (retried after the restart)
    unexpected: list[str] = field(default_factory=list)
    reports: Counter[str] = field(default_factory=Counter)  # user -> reports answered 200
    sends: Counter[int] = field(default_factory=Counter)  # final status -> count
    send_keys: list[str] = field(default_factory=list)


async def until_answered(
    server: SubgateProcess,
    http: aiohttp.ClientSession,
    observed: Observed,
    finals: set[int],
    method: str,
    path: str,
    **kwargs: Any,
) -> tuple[int, bytes]:
    """Send until an answer in ``finals`` (the same request, as a client retries); return it."""
    while True:
        await server.up.wait()
        try:
            async with http.request(method, server.url + path, **kwargs) as answer:
                body = await answer.read()
                status = answer.status
        except (aiohttp.ClientError, OSError):
            observed.unavailable += 1
            continue
        if status in finals:
            return status, body
        if status == 503:
            observed.unavailable += 1
            continue
        observed.unexpected.append(f"{method} {path} -> {status} {body[:200]!r}")
        return status, body


async def drive_notifications(
    server: SubgateProcess,
    http: aiohttp.ClientSession,
    observed: Observed,
    queue: asyncio.Queue[Notification],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        notification = await queue.get()
        status, _ = await until_answered(
            server,
            http,
            observed,
            NOTIFY_FINAL,
            "POST",
            "/alipay/notify",
            data=notification.body,
            headers={"Content-Type": notification.content_type},
        )
        if status == 200:
            observed.acknowledged[notification.dedupe_key] += 1
        queue.put_nowait(notification)  # the pool cycles: later posts are Alipay's re-sends


def auth(**headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **headers}


def send_body(user: str, key: str) -> bytes:
    body = {
        "channel": "mini_template",
        "to_user_id": user,
        "template_id": ONE_TIME,
        "page": f"pages/orders/detail?key={key}",
        "data": {
            "keyword1": {"value": "订单已发货"},
            "keyword2": {"value": "2026-11-23 16:00"},
            "keyword3": {"value": key},
        },
    }
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


async def drive_sends(
    server: SubgateProcess,
    http: aiohttp.ClientSession,
    observed: Observed,
    user: str,
    stop: asyncio.Event,
) -> None:
    """Per round: one accepted report (one credit), then two concurrent sends (one too many)."""
    round_number = 0
    while not stop.is_set():
        round_number += 1
        report_key = f"report-{user}-{round_number}"
        status, _ = await until_answered(
            server,
            http,
            observed,
            {200},
            "POST",
            f"/v1/apps/{APP_ID}/users/{user}/subscribe-results",
            data=json.dumps(accepted_report(ONE_TIME)).encode(),
            headers=auth(**{"Idempotency-Key": report_key}),
        )
        if status == 200:
            observed.reports[user] += 1
        keys = [f"send-{user}-{round_number}-{n}" for n in (1, 2)]
        observed.send_keys.extend(keys)
        answers = await asyncio.gather(
            *(
                until_answered(
                    server,
                    http,
                    observed,
                    SEND_FINAL,
                    "POST",
                    f"/v1/apps/{APP_ID}/messages",
                    data=send_body(user, key),
                    headers=auth(**{"Idempotency-Key": key}),
                )
                for key in keys
            )
        )
        for status, body in answers:
            observed.sends[status] += 1
            if status == 403 and b'"consent_required"' not in body:
                observed.unexpected.append(f"send refused with {body[:200]!r}")


async def kill_at_random_moments(
    server: SubgateProcess, http: aiohttp.ClientSession, rng: random.Random
) -> list[float]:
    delays = []
    for _ in range(KILLS):
        delay = rng.uniform(0.2, 1.5)
        delays.append(round(delay, 3))
        await asyncio.sleep(delay)  # the random moment of the kill (not an ordering)
        await server.kill()
        await server.start(http)
    await asyncio.sleep(rng.uniform(0.5, 1.0))  # keep driving the last process a while
    return delays


def read_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in connection.execute(sql, params)]
    finally:
        connection.close()


async def wait_for_outbox_to_settle(db: Path) -> None:
    """Messages reserved or in flight in a killed process settle once their lease expires."""
    end = time.monotonic() + 15
    while time.monotonic() < end:
        open_rows = read_rows(
            db, "SELECT count(*) FROM messages WHERE status IN ('pending', 'sending')"
        )
        if open_rows[0][0] == 0:
            return
        await asyncio.sleep(0.1)  # polling the file, bounded
    pytest.fail("the outbox did not settle after the last restart")


async def projections_and_folds(db: Path) -> list[tuple[ConsentState, ConsentState]]:
    store = await open_store(f"sqlite:///{db}")
    try:
        pairs = []
        events = await store.consent_events(APP_ID)
        keys = {(e.user_id, e.channel, e.template_id) for e in events}
        states: list[ConsentState] = []
        for user in sorted({e.user_id for e in events}):
            states.extend(await store.consent_states(APP_ID, user))
        assert {(s.user_id, s.channel, s.template_id) for s in states} == keys
        for state in states:
            history = await store.consent_history(
                APP_ID, state.user_id, state.channel, state.template_id
            )
            pairs.append(
                (
                    state,
                    fold(
                        APP_ID,
                        state.user_id,
                        state.channel,
                        state.template_id,
                        [(e, e.id) for e in history],
                    ),
                )
            )
        return pairs
    finally:
        await store.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlipay]:
    async with running_fake() as running:
        yield running


@pytest.mark.timeout(90)
async def test_sigkill_at_random_moments_loses_nothing_acknowledged_and_spends_no_credit_twice(
    tmp_path: Path, fake: FakeAlipay
) -> None:
    rng = random.Random(SEED)
    pool = notification_pool()
    rng.shuffle(pool)
    server = SubgateProcess(tmp_path, fake.url)
    db = server.db
    observed = Observed()
    stop = asyncio.Event()
    queue: asyncio.Queue[Notification] = asyncio.Queue()
    for notification in pool:
        queue.put_nowait(notification)
    started = time.monotonic()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await server.start(http)
        drivers = [
            asyncio.create_task(drive_notifications(server, http, observed, queue, stop))
            for _ in range(NOTIFY_WORKERS)
        ]
        drivers += [
            asyncio.create_task(drive_sends(server, http, observed, user, stop)) for user in USERS
        ]
        try:
            delays = await kill_at_random_moments(server, http, rng)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*drivers), DEADLINE_SECONDS)
            await wait_for_outbox_to_settle(db)
        finally:
            for driver in drivers:
                driver.cancel()
            await server.stop()
    elapsed = time.monotonic() - started

    # What the clients were told is consistent and nothing unexpected was answered.
    assert observed.unexpected == []
    assert server.starts == KILLS + 1
    assert observed.unavailable > 0, "no request ever met a dead server: the kills proved nothing"

    # Every acknowledged notification is stored exactly once.
    stored = Counter(
        key
        for (key,) in read_rows(db, "SELECT dedupe_key FROM notifications WHERE app_id = ?", APP_ID)
    )
    assert len(observed.acknowledged) > 0
    assert {key: stored[key] for key in observed.acknowledged} == dict.fromkeys(
        observed.acknowledged, 1
    )
    assert set(stored.values()) == {1}

    # No credit spent twice: per user, messages holding a credit <= accept events.
    messages = read_rows(db, "SELECT id, idempotency_key, user_id, status, payload FROM messages")
    accepts = Counter(
        user
        for (user,) in read_rows(
            db,
            "SELECT user_id FROM consent_events WHERE app_id = ? AND action = 'accept'",
            APP_ID,
        )
    )
    holding = Counter(user for _, _, user, status, _ in messages if status in HELD)
    for user in USERS:
        assert holding[user] <= accepts[user], (user, holding[user], accepts[user])
        assert accepts[user] >= observed.reports[user]
    spends = Counter(
        evidence
        for (evidence,) in read_rows(
            db, "SELECT evidence FROM consent_events WHERE action = 'spend'"
        )
    )
    assert spends == Counter(f"message:{message_id}" for message_id, *_ in messages)

    # No Idempotency-Key made two platform calls; every sent message made exactly one.
    calls = Counter(str(call.biz["page"]).rpartition("key=")[2] for call in fake.sends)
    assert fake.refused == []
    assert max(calls.values(), default=0) <= 1
    assert len(calls) == len(fake.sends)
    by_key = {key: status for _, key, _, status, _ in messages}
    assert set(calls) <= set(by_key)
    assert all(calls[key] == 1 for key, status in by_key.items() if status == "sent")
    assert set(by_key) <= set(observed.send_keys)

    # The ledger projection equals the fold of its log for every key; no negative credit.
    pairs = await projections_and_folds(db)
    assert pairs and all(state == refolded for state, refolded in pairs)
    assert all(state.credits >= 0 for state, _ in pairs)

    statuses = Counter(status for *_, status, _ in messages)
    print(  # noqa: T201 (the observation, shown with -s)
        f"\ncrash test: kills={KILLS} at {delays}s, starts={server.starts}, "
        f"notifications acknowledged={sum(observed.acknowledged.values())} "
        f"(distinct {len(observed.acknowledged)}, stored {sum(stored.values())}), "
        f"unavailable answers={observed.unavailable}, reports={sum(observed.reports.values())}, "
        f"send answers={dict(observed.sends)}, messages={dict(statuses)}, "
        f"platform calls={len(fake.sends)}, elapsed={elapsed:.1f}s"
    )
    assert elapsed < 60
