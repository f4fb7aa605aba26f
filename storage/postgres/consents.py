"""Consent-ledger SQL for PostgreSQL: append events, keep the projection equal to the fold.

Every append runs inside the caller's transaction and first locks the projection row of each key
it touches (inserting an empty row when the key is new), in one sorted order so that two
transactions locking the same keys cannot deadlock. Appends for one key therefore serialise
across every process, and each computes the new state from the committed state before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from storage.jsontext import spaced_json
from storage.ledger import EventKey, apply, event_key, fold
from storage.models import (
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    StoredConsentEvent,
)
from storage.postgres.connection import Conn
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

Ident = tuple[str, str, str, str]  # app_id, user_id, channel, template_id

EVENT_COLUMNS = (
    "app_id, user_id, channel, template_id, action, occurred_at, source, evidence, keep, refuse"
)
STATE_COLUMNS = (
    "app_id, user_id, channel, template_id, status, credits, keep, refuse, updated_at, "
    "last_source, last_key, open_spends"
)
# What a lookup reads (``ConsentSummary``): the state without the fold's bookkeeping columns.
SUMMARY_COLUMNS = "channel, template_id, status, credits, keep, refuse, updated_at, last_source"
KEY_WHERE = "app_id = $1 AND user_id = $2 AND channel = $3 AND template_id = $4"
_INSERT_EVENT = (
    f"INSERT INTO consent_events ({EVENT_COLUMNS}, recorded_at) "  # noqa: S608 (constant)
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"
)
_LOCK_STATE = f"SELECT {STATE_COLUMNS} FROM consents WHERE {KEY_WHERE} FOR UPDATE"  # noqa: S608
_INSERT_EMPTY = (
    f"INSERT INTO consents ({STATE_COLUMNS}) "  # noqa: S608 (constant)
    "VALUES ($1, $2, $3, $4, 'none', 0, false, false, NULL, NULL, NULL, '[]') "
    "ON CONFLICT DO NOTHING"
)
_SAVE_STATE = (
    "UPDATE consents SET status = $5, credits = $6, keep = $7, refuse = $8, updated_at = $9, "  # noqa: S608
    f"last_source = $10, last_key = $11, open_spends = $12 WHERE {KEY_WHERE}"
)


def ident_of(event: ConsentEvent) -> Ident:
    return (event.app_id, event.user_id, event.channel, event.template_id)


async def lock_states(connection: Conn, idents: Iterable[Ident]) -> dict[Ident, ConsentState]:
    """Lock each key's projection row until the transaction ends; return the locked states."""
    states = {}
    for ident in sorted(set(idents)):
        row = await connection.fetchrow(_LOCK_STATE, *ident)
        if row is None:  # a new key: create its row, then lock whichever row won the insert
            await connection.execute(_INSERT_EMPTY, *ident)
            row = await connection.fetchrow(_LOCK_STATE, *ident)
        assert row is not None
        states[ident] = state_from_row(row)
    return states


async def lock_existing_states(
    connection: Conn, idents: Iterable[Ident]
) -> dict[Ident, ConsentState]:
    """Like ``lock_states``, but a key without a projection row is left out, not created: for
    keys that may get no event in this transaction (a recipient the consent check skips)."""
    states = {}
    for ident in sorted(set(idents)):
        row = await connection.fetchrow(_LOCK_STATE, *ident)
        if row is not None:
            states[ident] = state_from_row(row)
    return states


async def append_events(
    connection: Conn, events: Sequence[ConsentEvent], recorded_at: int
) -> list[ConsentState]:
    """Append each event and bring its key's projection up to date; return the new states."""
    if not events:
        return []
    states = await lock_states(connection, (ident_of(event) for event in events))
    after = []
    for event in events:
        ident = ident_of(event)
        event_id = await connection.fetchval(_INSERT_EVENT, *_event_values(event), recorded_at)
        key = event_key(event, event_id)
        current = states[ident]
        if current.last_key is None or key > tuple(current.last_key):
            state = apply(current, event, key)
        else:  # arrived late: refold the whole log of this key (this transaction's rows too)
            state = fold(*ident, await _events_of(connection, ident))
        states[ident] = state
        after.append(state)
    for state in states.values():
        await connection.execute(_SAVE_STATE, *state_values(state))
    return after


async def _events_of(connection: Conn, ident: Ident) -> list[tuple[ConsentEvent, int]]:
    rows = await connection.fetch(
        f"SELECT {EVENT_COLUMNS}, id FROM consent_events WHERE {KEY_WHERE}",  # noqa: S608
        *ident,
    )
    return [(event_from_row(row), row["id"]) for row in rows]


def history_query() -> str:
    return (
        f"SELECT {EVENT_COLUMNS}, id, recorded_at FROM consent_events "  # noqa: S608 (constant)
        f"WHERE {KEY_WHERE}"
    )


def stored_events_in_order(rows: Sequence[asyncpg.Record]) -> list[StoredConsentEvent]:
    """History rows in fold order (the order that decides state), oldest first."""
    events = [
        StoredConsentEvent(
            **event_from_row(row).model_dump(),
            id=row["id"],
            recorded_at=from_millis(row["recorded_at"]),
        )
        for row in rows
    ]
    return sorted(events, key=lambda e: event_key(e, e.id))


def _event_values(event: ConsentEvent) -> tuple[Any, ...]:
    return (
        *ident_of(event),
        event.action.value,
        to_millis(event.occurred_at),
        event.source.value,
        event.evidence,
        event.keep,
        event.refuse,
    )


def event_from_row(row: asyncpg.Record) -> ConsentEvent:
    return ConsentEvent.model_validate(
        {
            "app_id": row["app_id"],
            "user_id": row["user_id"],
            "channel": row["channel"],
            "template_id": row["template_id"],
            "action": row["action"],
            "occurred_at": from_millis(row["occurred_at"]),
            "source": row["source"],
            "evidence": row["evidence"],
            "keep": row["keep"],
            "refuse": row["refuse"],
        }
    )


def state_values(state: ConsentState) -> tuple[Any, ...]:
    return (
        state.app_id,
        state.user_id,
        state.channel,
        state.template_id,
        state.status.value,
        state.credits,
        state.keep,
        state.refuse,
        optional_millis(state.updated_at),
        None if state.last_source is None else state.last_source.value,
        None if state.last_key is None else spaced_json(state.last_key),
        spaced_json(state.open_spends),
    )


def state_from_row(row: asyncpg.Record) -> ConsentState:
    last_key: EventKey | None = (
        None if row["last_key"] is None else tuple(json.loads(row["last_key"]))
    )
    return ConsentState.model_validate(
        {
            "app_id": row["app_id"],
            "user_id": row["user_id"],
            "channel": row["channel"],
            "template_id": row["template_id"],
            "status": row["status"],
            "credits": row["credits"],
            "keep": row["keep"],
            "refuse": row["refuse"],
            "updated_at": optional_datetime(row["updated_at"]),
            "last_source": row["last_source"],
            "last_key": last_key,
            "open_spends": tuple(json.loads(row["open_spends"])),
        }
    )


def summary_from_row(row: asyncpg.Record) -> ConsentSummary:
    """A row holding ``SUMMARY_COLUMNS``."""
    return ConsentSummary(
        row["channel"],
        row["template_id"],
        ConsentStatus(row["status"]),
        row["credits"],
        row["keep"],
        row["refuse"],
        optional_datetime(row["updated_at"]),
        None if row["last_source"] is None else ConsentSource(row["last_source"]),
    )
