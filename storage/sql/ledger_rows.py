"""The consent ledger's rows, both ways: events, projection states and lookup summaries.

Flags are written as Python booleans (SQLite keeps them as 1 and 0, PostgreSQL as BOOLEAN) and
read back through ``bool``; times are epoch milliseconds (``storage.timecodec``); a state's last
event key and open spends are JSON text (``storage.jsontext``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from storage.jsontext import spaced_json
from storage.ledger import EventKey, event_key, ident_of
from storage.models import (
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    StoredConsentEvent,
)
from storage.sql.rows import Row
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis


def event_values(event: ConsentEvent, recorded_at: int) -> tuple[Any, ...]:
    """The parameters of ``insert_event``."""
    return (
        *ident_of(event),
        event.action.value,
        to_millis(event.occurred_at),
        event.source.value,
        event.evidence,
        event.keep,
        event.refuse,
        recorded_at,
    )


def event_from_row(row: Row) -> ConsentEvent:
    """A row that starts with ``EVENT_COLUMNS``."""
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


def keyed_events(rows: Iterable[Row]) -> list[tuple[ConsentEvent, int]]:
    """Rows of ``events_of_key`` as the fold takes them: (event, event id)."""
    return [(event_from_row(row), row[10]) for row in rows]


def stored_events_in_order(rows: Iterable[Row]) -> list[StoredConsentEvent]:
    """Rows of ``history_of_key`` in fold order (the order that decides state), oldest first."""
    events = [
        StoredConsentEvent(
            **event_from_row(row).model_dump(), id=row[10], recorded_at=from_millis(row[11])
        )
        for row in rows
    ]
    return sorted(events, key=lambda e: event_key(e, e.id))


def state_values(state: ConsentState) -> tuple[Any, ...]:
    """A projection row, in ``STATE_COLUMNS`` order (the parameters of ``save_state``)."""
    return (
        *ident_of(state),
        state.status.value,
        state.credits,
        state.keep,
        state.refuse,
        optional_millis(state.updated_at),
        None if state.last_source is None else state.last_source.value,
        None if state.last_key is None else spaced_json(state.last_key),
        spaced_json(state.open_spends),
    )


def state_from_row(row: Row) -> ConsentState:
    """A row of ``STATE_COLUMNS``."""
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


def summary_from_row(row: Row) -> ConsentSummary:
    """A row that starts with ``SUMMARY_COLUMNS``."""
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
