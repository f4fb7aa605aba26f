"""Consent-ledger writes for the SQLite store: append events and keep the projection equal to
the fold.

Everything here runs on the writer thread inside a job's transaction: the single writer is what
serialises appends, so a key's state is read and saved without any lock of ours.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from storage.ledger import Ident, apply, empty_state, event_key, fold, ident_of
from storage.models import ConsentEvent, ConsentState
from storage.sql.dialect import SQLITE
from storage.sql.ledger_rows import event_values, keyed_events, state_from_row, state_values
from storage.sql.statements import statements_for

SQL = statements_for(SQLITE).ledger


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
    cursor = connection.execute(SQL.insert_event, event_values(event, recorded_at))
    assert cursor.lastrowid is not None  # one step fewer than RETURNING id on the writer
    key = event_key(event, cursor.lastrowid)
    ident = ident_of(event)
    if current is None or ident_of(current) != ident:
        current = load_state(connection, ident)
    if current.last_key is None or key > tuple(current.last_key):
        state = apply(current, event, key)
    else:  # arrived late: refold the whole log of this key
        state = fold(*ident, keyed_events(connection.execute(SQL.events_of_key, ident)))
    connection.execute(SQL.save_state, (*state_values(state), cursor.lastrowid))
    return state


def load_state(connection: sqlite3.Connection, ident: Ident) -> ConsentState:
    """The key's state as committed (or as this transaction left it); empty for a new key."""
    row = connection.execute(SQL.state_of_key, ident).fetchone()
    return state_from_row(row) if row else empty_state(*ident)
