"""Consent-ledger writes for PostgreSQL: append events, keep the projection equal to the fold.

Every append runs inside the caller's transaction and first locks the projection row of each key
it touches (inserting an empty row when the key is new), in one sorted order so that two
transactions locking the same keys cannot deadlock. Appends for one key therefore serialise
across every process, and each computes the new state from the committed state before it. A
key's state is saved after each of its events, as on SQLite: each save writes the event log's
``consent.changed`` for the event just appended (``0006_events.sql``).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Iterable, Sequence

from storage.ledger import Ident, apply, event_key, fold, ident_of
from storage.models import ConsentEvent, ConsentState
from storage.postgres.connection import Conn
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import LEDGER, STATE_COLUMNS
from storage.sql.ledger_rows import event_values, keyed_events, state_from_row, state_values
from storage.sql.statements import statements_for

SQL = statements_for(POSTGRES).ledger
_INSERT_EVENT = POSTGRES.render(f"{LEDGER.insert_event} RETURNING id")
_LOCK_STATE = POSTGRES.render(f"{LEDGER.state_of_key} FOR UPDATE")
_INSERT_EMPTY = POSTGRES.render(
    f"INSERT INTO consents ({STATE_COLUMNS}) "
    "VALUES (?, ?, ?, ?, 'none', 0, false, false, NULL, NULL, NULL, '[]') ON CONFLICT DO NOTHING"
)


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
    connection: Conn,
    events: Sequence[ConsentEvent],
    recorded_at: int,
    known: dict[Ident, ConsentState] | None = None,
) -> list[ConsentState]:
    """Append each event and bring its key's projection up to date; return the new states.

    ``known``: states this transaction has locked already (``lock_states``); when they cover
    every key, they are not locked and read again."""
    if not events:
        return []
    idents = {ident_of(event) for event in events}
    if known is not None and idents <= known.keys():
        states = dict(known)
    else:
        states = await lock_states(connection, idents)
    after = []
    for event in events:
        ident = ident_of(event)
        event_id = await connection.fetchval(_INSERT_EVENT, *event_values(event, recorded_at))
        key = event_key(event, event_id)
        current = states[ident]
        if current.last_key is None or key > tuple(current.last_key):
            state = apply(current, event, key)
        else:  # arrived late: refold the whole log of this key (this transaction's rows too)
            state = fold(*ident, keyed_events(await connection.fetch(SQL.events_of_key, *ident)))
        await connection.execute(SQL.save_state, *state_values(state), event_id)
        states[ident] = state
        after.append(state)
    return after
