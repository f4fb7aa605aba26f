"""Consent-ledger SQL for the SQLite store: append events and keep the projection equal to the fold.

Everything here runs on the writer thread inside a job's transaction, or is a read query.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from storage.jsontext import spaced_json
from storage.ledger import EventKey, apply, empty_state, event_key, fold
from storage.models import (
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    StoredConsentEvent,
)
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

_EVENT_COLUMNS = (
    "app_id, user_id, channel, template_id, action, occurred_at, source, evidence, keep, refuse"
)
STATE_COLUMNS = (
    "app_id, user_id, channel, template_id, status, credits, keep, refuse, updated_at, "
    "last_source, last_key, open_spends"
)
# What a lookup reads (``ConsentSummary``, in its field order): the state without the fold's
# bookkeeping columns.
SUMMARY_COLUMNS = "channel, template_id, status, credits, keep, refuse, updated_at, last_source"
_INSERT_EVENT = (
    f"INSERT INTO consent_events ({_EVENT_COLUMNS}, recorded_at) "  # noqa: S608 (constant)
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SAVE_STATE = (
    f"INSERT OR REPLACE INTO consents ({STATE_COLUMNS}) "  # noqa: S608 (constant)
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_KEY_WHERE = "app_id = ? AND user_id = ? AND channel = ? AND template_id = ?"


def append_events(
    connection: sqlite3.Connection,
    events: Sequence[ConsentEvent],
    recorded_at: int,
    known: Mapping[str, ConsentState] | None = None,
) -> list[ConsentState]:
    """Append each event and bring its key's projection up to date; return the new states.

    ``known``: states by user id that the caller has just read in this transaction (a
    reservation's), so they are not read again; each is used once, for the first event of its
    key, and only if it is the state of that event's key.
    """
    unused = dict(known or {})
    return [
        _append(connection, event, recorded_at, unused.pop(event.user_id, None)) for event in events
    ]


def _append(
    connection: sqlite3.Connection,
    event: ConsentEvent,
    recorded_at: int,
    current: ConsentState | None = None,
) -> ConsentState:
    cursor = connection.execute(_INSERT_EVENT, (*_event_values(event), recorded_at))
    assert cursor.lastrowid is not None
    key = event_key(event, cursor.lastrowid)
    ident = (event.app_id, event.user_id, event.channel, event.template_id)
    if (
        current is None
        or (
            current.app_id,
            current.user_id,
            current.channel,
            current.template_id,
        )
        != ident
    ):
        current = load_state(connection, *ident)
    if current.last_key is None or key > tuple(current.last_key):
        state = apply(current, event, key)
    else:  # arrived late: refold the whole log of this key
        state = fold(*ident, _events_of(connection, *ident))
    connection.execute(_SAVE_STATE, state_values(state))
    return state


def load_state(
    connection: sqlite3.Connection, app_id: str, user_id: str, channel: str, template_id: str
) -> ConsentState:
    row = connection.execute(
        f"SELECT {STATE_COLUMNS} FROM consents WHERE {_KEY_WHERE}",  # noqa: S608 (constant)
        (app_id, user_id, channel, template_id),
    ).fetchone()
    return state_from_row(row) if row else empty_state(app_id, user_id, channel, template_id)


def _events_of(
    connection: sqlite3.Connection, app_id: str, user_id: str, channel: str, template_id: str
) -> list[tuple[ConsentEvent, int]]:
    rows = connection.execute(
        f"SELECT {_EVENT_COLUMNS}, id FROM consent_events WHERE {_KEY_WHERE}",  # noqa: S608
        (app_id, user_id, channel, template_id),
    ).fetchall()
    return [(event_from_row(row), row[10]) for row in rows]


def history_query() -> str:
    return (
        f"SELECT {_EVENT_COLUMNS}, id, recorded_at FROM consent_events "  # noqa: S608 (constant)
        f"WHERE {_KEY_WHERE}"
    )


def stored_events_in_order(rows: Sequence[Sequence[Any]]) -> list[StoredConsentEvent]:
    """History rows in fold order (the order that decides state), oldest first."""
    events = [
        StoredConsentEvent(
            **event_from_row(row).model_dump(), id=row[10], recorded_at=from_millis(row[11])
        )
        for row in rows
    ]
    return sorted(events, key=lambda e: event_key(e, e.id))


def _event_values(event: ConsentEvent) -> tuple[Any, ...]:
    return (
        event.app_id,
        event.user_id,
        event.channel,
        event.template_id,
        event.action.value,
        to_millis(event.occurred_at),
        event.source.value,
        event.evidence,
        _optional_flag(event.keep),
        _optional_flag(event.refuse),
    )


def event_from_row(row: Sequence[Any]) -> ConsentEvent:
    return ConsentEvent.model_validate(
        {
            "app_id": row[0],
            "user_id": row[1],
            "channel": row[2],
            "template_id": row[3],
            "action": row[4],
            "occurred_at": from_millis(row[5]),
            "source": row[6],
            "evidence": row[7],
            "keep": None if row[8] is None else bool(row[8]),
            "refuse": None if row[9] is None else bool(row[9]),
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
        int(state.keep),
        int(state.refuse),
        optional_millis(state.updated_at),
        None if state.last_source is None else state.last_source.value,
        None if state.last_key is None else spaced_json(state.last_key),
        spaced_json(state.open_spends),
    )


def state_from_row(row: Sequence[Any]) -> ConsentState:
    last_key: EventKey | None = None if row[10] is None else tuple(json.loads(row[10]))
    return ConsentState.model_validate(
        {
            "app_id": row[0],
            "user_id": row[1],
            "channel": row[2],
            "template_id": row[3],
            "status": row[4],
            "credits": row[5],
            "keep": bool(row[6]),
            "refuse": bool(row[7]),
            "updated_at": optional_datetime(row[8]),
            "last_source": row[9],
            "last_key": last_key,
            "open_spends": tuple(json.loads(row[11])),
        }
    )


def summary_from_row(row: Sequence[Any]) -> ConsentSummary:
    """A row of ``SUMMARY_COLUMNS`` (from the first column on)."""
    return ConsentSummary(
        row[0],
        row[1],
        ConsentStatus(row[2]),
        row[3],
        bool(row[4]),
        bool(row[5]),
        optional_datetime(row[6]),
        None if row[7] is None else ConsentSource(row[7]),
    )


def _optional_flag(value: bool | None) -> int | None:
    return None if value is None else int(value)
