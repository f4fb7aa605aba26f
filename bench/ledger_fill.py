"""Build a large consent ledger fast, exactly as the SQLite store would have written it.

The schema is the store's own (``storage.sqlite.migrate.apply_migrations``). Rows go in with bulk
SQL in one transaction: each key's events into ``consent_events`` (ids in order, as the store
assigns them), and its projection into ``consents``, computed with the store's own code
(``storage.ledger.apply`` per event, ``storage.sql.ledger_rows.state_values`` for the row). The
history tables a real ledger would also hold (``subscribe_reports``, ``messages``) are not
written: nothing measured here reads them.

Every key follows a *scenario*: a short history with the state it must end in, chosen per
(user, template) by a deterministic hash, so a check can recompute what any user must read back.
``check_sample`` then reads a sample through the store's read path and ``ConsentLedger``: the
projection equals the fold of the history, the history is the scenario's, and ``can_send``,
``status`` and ``credits`` are what the scenario says.

Databases are cached in ``bench/.cache`` (gitignored) by family, size, ``VERSION`` and schema.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.cache import cached_database
from bench.intake import APP_ID
from bench.service import KINDS, LONG_TERM, ONE_TIME, SECOND_ONE_TIME
from server.consent.ledger import ConsentLedger
from server.consent.templates import TemplateRegistry
from server.settings import AppSettings
from storage import SQLiteOptions, open_store
from storage.ledger import apply, empty_state, event_key, fold
from storage.models import (
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
)
from storage.sql.ledger import STATE_COLUMNS
from storage.sql.ledger_rows import state_values
from storage.sqlite.connection import connect
from storage.sqlite.migrate import apply_migrations
from storage.timecodec import from_millis, to_millis

VERSION = 1
CHANNEL = ConsentChannel.MINI_TEMPLATE.value
DAY_MS = 86_400_000
_EVENT_COLUMNS = (
    "id, app_id, user_id, channel, template_id, action, occurred_at, recorded_at, source, "
    "evidence, keep, refuse"
)
_INSERT_EVENT = f"INSERT INTO consent_events ({_EVENT_COLUMNS}) VALUES ({','.join('?' * 12)})"  # noqa: S608
_INSERT_STATE = f"INSERT INTO consents ({STATE_COLUMNS}) VALUES ({','.join('?' * 12)})"  # noqa: S608
_CHUNK = 50_000

A, S, R, C = ConsentAction.ACCEPT, ConsentAction.SPEND, ConsentAction.REFUND, ConsentAction.CANCEL
REJECT = ConsentAction.REJECT


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: int  # out of 100 within its template's list
    actions: tuple[ConsentAction, ...]
    status: ConsentStatus  # what the projection must say afterwards
    credits: int  # one-time sends left (for long-term templates: the projection's count)
    refuse: bool = False  # a rejection with "don't ask again"


SUB, CANCELLED, REJECTED = ConsentStatus.SUBSCRIBED, ConsentStatus.CANCELLED, ConsentStatus.REJECTED
ONE_TIME_MIX = (
    Scenario("one credit", 30, (A,), SUB, 1),
    Scenario("two credits", 12, (A, A), SUB, 2),
    Scenario("three credits", 5, (A, A, A), SUB, 3),
    Scenario("one of two spent", 12, (A, A, S), SUB, 1),
    Scenario("spent", 15, (A, S), SUB, 0),
    Scenario("spent, refunded", 4, (A, S, R), SUB, 1),
    Scenario("cancelled", 8, (A, A, C), CANCELLED, 0),
    Scenario("spent, cancelled", 4, (A, S, C), CANCELLED, 0),
    Scenario("rejected", 10, (REJECT,), REJECTED, 0),
)
LONG_TERM_MIX = (
    Scenario("subscribed", 50, (A,), SUB, 1),
    Scenario("subscribed, two sends", 15, (A, S, S), SUB, 0),
    Scenario("cancelled", 12, (A, C), CANCELLED, 0),
    Scenario("rejected, don't ask again", 15, (REJECT,), REJECTED, 0, refuse=True),
    Scenario("cancelled, resubscribed", 8, (A, C, A), SUB, 1),
)


@dataclass(frozen=True)
class Family:
    """Which templates each user has, and the scenarios each template's keys are drawn from."""

    name: str
    templates: tuple[tuple[str, tuple[Scenario, ...]], ...]


MIXED = Family(
    "mixed",
    ((ONE_TIME, ONE_TIME_MIX), (LONG_TERM, LONG_TERM_MIX), (SECOND_ONE_TIME, ONE_TIME_MIX)),
)


def credits_family(credits: int) -> Family:
    """Every user holds exactly ``credits`` one-time credits of ``ONE_TIME`` and nothing else."""
    scenario = Scenario(f"{credits} credits", 100, (A,) * credits, SUB, credits)
    return Family(f"credits{credits}", ((ONE_TIME, (scenario,)),))


def user_id(index: int) -> str:
    """Alipay user ids: 2088 and 12 digits."""
    return f"2088{index:012d}"


def message_id(idempotency_key: str) -> str:
    """As ``server.sending.sender`` derives it from the app and the Idempotency-Key."""
    digest = hashlib.sha256(f"{APP_ID}\n{idempotency_key}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


def scenario_of(family: Family, user: int, slot: int) -> Scenario:
    scenarios = family.templates[slot][1]
    pick = hash((user, slot, 0x5EED)) % 100  # int tuples hash the same in every process
    for scenario in scenarios:
        if pick < scenario.weight:
            return scenario
        pick -= scenario.weight
    return scenarios[-1]


def history(
    family: Family, user: int, slot: int, base_ms: int
) -> Iterator[tuple[ConsentEvent, int]]:
    """The key's events with their recorded_at, oldest first, as the services would write them."""
    template = family.templates[slot][0]
    scenario = scenario_of(family, user, slot)
    who = user_id(user)
    h = hash((user, slot, 0xC0FFEE)) & 0xFFFFFFFFFFFF
    at = base_ms + h % (20 * DAY_MS)
    keep = h % 8 == 0
    last_spend = ""
    for i, action in enumerate(scenario.actions):
        at += DAY_MS + (h >> (3 * i)) % 3_600_000
        source, evidence = ConsentSource.CLIENT_REPORT, f"report:r{user}-{slot}-{i}"
        flags: tuple[bool | None, bool | None] = (keep, scenario.refuse)
        if action in (S, R):
            source, flags = ConsentSource.SEND, (None, None)
            if action is S:
                last_spend = f"message:{message_id(f'send-{user}-{slot}-{i}')}"
            evidence = last_spend
        elif action is C:
            source, flags = ConsentSource.PLATFORM_QUERY, (None, None)
            evidence = f"query:{template}=0@{from_millis(at).isoformat()}"
        event = ConsentEvent.model_construct(
            app_id=APP_ID,
            user_id=who,
            channel=CHANNEL,
            template_id=template,
            action=action,
            occurred_at=from_millis(at),
            source=source,
            evidence=evidence,
            keep=flags[0],
            refuse=flags[1],
        )
        yield event, at + h % 1500


@dataclass(frozen=True)
class Ledger:
    path: Path
    users: int
    family: Family
    meta: dict[str, Any]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path.resolve()}"


def cached_ledger(family: Family, users: int) -> Ledger:
    """The cached database of ``family`` with ``users`` users, built once."""
    path = cached_database(f"ledger-{family.name}-{users}-v{VERSION}")
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        meta = build(path, family, users)
        meta_path.write_text(json.dumps(meta, indent=2))
    return Ledger(path, users, family, json.loads(meta_path.read_text()))


def build(path: Path, family: Family, users: int) -> dict[str, Any]:
    print(f"  building {path.name}: {users:,} users x {len(family.templates)} templates ...")
    started = time.monotonic()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    connection = connect(SQLiteOptions(path=partial, synchronous="OFF"))
    apply_migrations(connection)
    connection.execute("PRAGMA journal_mode=OFF")  # one bulk transaction; WAL again at the end
    connection.execute("PRAGMA cache_size=-1000000")
    base_ms = int((datetime.now(UTC) - timedelta(days=30)).timestamp() * 1000)
    events = states = 0
    event_rows: list[tuple[Any, ...]] = []
    state_rows: list[tuple[Any, ...]] = []
    connection.execute("BEGIN")
    for user in range(users):
        for slot in range(len(family.templates)):
            state = empty_state(APP_ID, user_id(user), CHANNEL, family.templates[slot][0])
            for event, recorded_at in history(family, user, slot, base_ms):
                events += 1
                state = apply(state, event, event_key(event, events))
                event_rows.append(_event_row(events, event, recorded_at))
            state_rows.append(state_values(state))
            states += 1
        if len(event_rows) >= _CHUNK:
            _flush(connection, event_rows, state_rows)
    _flush(connection, event_rows, state_rows)
    connection.execute("COMMIT")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    partial.rename(path)
    seconds = time.monotonic() - started
    size = path.stat().st_size
    print(f"  built in {seconds:.0f} s: {events:,} events, {states:,} keys, {size / 1e6:.0f} MB")
    return {
        "users": users,
        "family": family.name,
        "events": events,
        "keys": states,
        "bytes": size,
        "build_seconds": round(seconds, 1),
        "base_ms": base_ms,
        "method": "bulk SQL in one transaction (projection computed with storage.ledger.apply)",
    }


def _event_row(event_id: int, event: ConsentEvent, recorded_at: int) -> tuple[Any, ...]:
    """One ``consent_events`` row in ``_EVENT_COLUMNS`` order (as the store's INSERT stores it)."""
    return (
        event_id,
        event.app_id,
        event.user_id,
        event.channel,
        event.template_id,
        event.action.value,
        to_millis(event.occurred_at),
        recorded_at,
        event.source.value,
        event.evidence,
        None if event.keep is None else int(event.keep),
        None if event.refuse is None else int(event.refuse),
    )


def _flush(
    connection: sqlite3.Connection,
    event_rows: list[tuple[Any, ...]],
    state_rows: list[tuple[Any, ...]],
) -> None:
    connection.executemany(_INSERT_EVENT, event_rows)
    connection.executemany(_INSERT_STATE, state_rows)
    event_rows.clear()
    state_rows.clear()


def copy_to(ledger: Ledger, target: Path) -> Path:
    """A private copy for a benchmark that writes (the cache stays as built)."""
    shutil.copyfile(ledger.path, target)
    return target


class CheckFailed(AssertionError):
    """The database does not read back as the scenarios say."""


async def check_sample(ledger: Ledger, sample: int, seed: int = 1) -> dict[str, Any]:
    """Read ``sample`` users back through the store and ``ConsentLedger``; raise if any differs."""
    store = await open_store(ledger.url)
    templates = TemplateRegistry([AppSettings.model_validate(_app_settings(ledger.family))])
    api = ConsentLedger(store, templates, lambda: datetime.now(UTC))
    users = random.Random(seed).sample(range(ledger.users), min(sample, ledger.users))
    keys = 0
    try:
        for user in users:
            for slot, (template, _) in enumerate(ledger.family.templates):
                await _check_key(store, api, ledger.family, user, slot, template)
                keys += 1
    finally:
        await store.close()
    return {"users_checked": len(users), "keys_checked": keys}


async def _check_key(
    store: Any, api: ConsentLedger, family: Family, user: int, slot: int, template: str
) -> None:
    who = user_id(user)
    scenario = scenario_of(family, user, slot)
    states: list[ConsentState] = await store.consent_states(APP_ID, who, CHANNEL, template)
    if len(states) != 1:
        raise CheckFailed(f"{who}/{template}: {len(states)} projections")
    events = await store.consent_history(APP_ID, who, CHANNEL, template)
    if fold(APP_ID, who, CHANNEL, template, [(e, e.id) for e in events]) != states[0]:
        raise CheckFailed(f"{who}/{template}: the projection is not the fold of its history")
    if tuple(e.action for e in events) != scenario.actions:
        raise CheckFailed(f"{who}/{template}: history is not scenario {scenario.name!r}")
    view = await api.subscription(APP_ID, who, template)
    one_time = KINDS[template] == "one_time"
    can_send = scenario.credits > 0 if one_time else scenario.status is ConsentStatus.SUBSCRIBED
    expected = (scenario.status, scenario.credits if one_time else 0, can_send)
    if (view.status, view.credits, view.can_send) != expected:
        raise CheckFailed(f"{who}/{template}: reads {view!r}, scenario {scenario.name!r}")


def _app_settings(family: Family) -> dict[str, Any]:
    return {
        "app_id": APP_ID,
        "alipay_public_key": "unused",
        "templates": [
            {"id": template, "kind": KINDS[template]} for template, _ in family.templates
        ],
    }
