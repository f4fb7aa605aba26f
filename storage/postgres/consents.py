"""Consent-ledger writes for PostgreSQL: append events, keep the projection equal to the fold.

Every append runs inside the caller's transaction and first locks the projection row of each key
it touches (inserting an empty row when the key is new), in one sorted order so that two
transactions locking the same keys cannot deadlock. Appends for one key therefore serialise
across every process, and each computes the new state from the committed state before it. A
key's state is saved after each of its events, as on SQLite: each save writes the event log's
``consent.changed`` for the event just appended (``0006_events.sql``).

A batch of writes (notifications, subscribe reports) locks every key it touches at once
(``lock_many``) and appends its groups of events in order (``append_in_order``): when each key
gets one event that sorts after its key's last, as in a burst of first answers, every entry and
saved state is written by one statement, since a statement per event is what such a burst
costs on PostgreSQL (bench/README.md, "PostgreSQL").
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Iterable, Sequence

from storage.ledger import Ident, apply, event_key, fold, ident_of
from storage.models import ConsentEvent, ConsentState
from storage.postgres.connection import Conn, columns_of
from storage.postgres.ledger_arrays import APPEND_MANY, EVENT_TYPES, NEW_EVENT_IDS, SAVED_TYPES
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import LEDGER, STATE_COLUMNS
from storage.sql.ledger_rows import event_values, keyed_events, state_from_row, state_values
from storage.sql.statements import statements_for

SQL = statements_for(POSTGRES).ledger
_INSERT_EVENT = POSTGRES.render(f"{LEDGER.insert_event} RETURNING id")
_LOCK_STATE = POSTGRES.render(f"{LEDGER.state_of_key} FOR UPDATE")
_EMPTY = "'none', 0, false, false, NULL, NULL, NULL, '[]'"  # a new key's state, after its key
_INSERT_EMPTY = POSTGRES.render(
    f"INSERT INTO consents ({STATE_COLUMNS}) VALUES (?, ?, ?, ?, {_EMPTY}) ON CONFLICT DO NOTHING"
)
_KEYS = "unnest(?::text[], ?::text[], ?::text[], ?::text[])"
_INSERT_EMPTY_MANY = POSTGRES.render(
    f"INSERT INTO consents ({STATE_COLUMNS}) SELECT k.*, {_EMPTY} "
    f"FROM {_KEYS} AS k(app_id, user_id, channel, template_id) ON CONFLICT DO NOTHING"
)
# Each key's row by its whole key, locked in the order given (a LATERAL with FOR UPDATE is not
# pulled up into a join over the table, whatever its statistics say).
_LOCK_MANY = POSTGRES.render(
    f"SELECT c.* FROM {_KEYS} WITH ORDINALITY AS k(app_id, user_id, channel, template_id, n) "
    f"CROSS JOIN LATERAL (SELECT {STATE_COLUMNS} FROM consents WHERE app_id = k.app_id "
    "AND user_id = k.user_id AND channel = k.channel AND template_id = k.template_id "
    "FOR UPDATE) AS c ORDER BY k.n"
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


async def lock_many(connection: Conn, idents: Iterable[Ident]) -> dict[Ident, ConsentState]:
    """As ``lock_states``, in two statements whatever the number of keys: the rows of new keys
    inserted, then every row locked, in one sorted order."""
    keys = sorted(set(idents))
    if not keys:
        return {}
    columns = columns_of(keys, 4)
    await connection.execute(_INSERT_EMPTY_MANY, *columns)
    rows = await connection.fetch(_LOCK_MANY, *columns)
    states = {ident_of(state): state for state in map(state_from_row, rows)}
    assert len(states) == len(keys)
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


async def append_in_order(
    connection: Conn,
    groups: Sequence[tuple[Sequence[ConsentEvent], int]],
    known: dict[Ident, ConsentState],
) -> list[list[ConsentState]]:
    """Append each group of events (with when it was recorded) in order, to keys this
    transaction has locked (``known``, kept up to date); the states each group's own events
    left. In one statement when each key gets one event that sorts after its key's last (a
    burst of first answers), otherwise one event at a time (``append_events``)."""
    flat = [(event, recorded_at) for events, recorded_at in groups for event in events]
    together = await append_each_once(connection, flat, known)
    if together is not None:
        known.update(zip((ident_of(event) for event, _ in flat), together, strict=True))
        left = iter(together)
        return [[next(left) for _ in events] for events, _ in groups]
    answers = []
    for events, recorded_at in groups:
        after = await append_events(connection, events, recorded_at, known=known)
        known.update(zip(map(ident_of, events), after, strict=True))
        answers.append(after)
    return answers


async def append_each_once(
    connection: Conn, events: Sequence[tuple[ConsentEvent, int]], known: dict[Ident, ConsentState]
) -> list[ConsentState] | None:
    """Append each event (with when it was recorded) to its key, whose state this transaction
    has locked (``known``), in two statements whatever their number: identifiers drawn, then
    entries and saved states together (``ledger_arrays.APPEND_MANY``). Only when each key gets
    one event and none sorts before its key's last: otherwise ``None`` and nothing written (the
    caller appends one event at a time, ``append_events``)."""
    idents = [ident_of(event) for event, _ in events]
    if not idents:
        return []
    if len(set(idents)) != len(idents):
        return None
    ids = [row[0] for row in await connection.fetch(NEW_EVENT_IDS, len(events))]
    entries, saved, after = [], [], []
    for (event, recorded_at), ident, event_id in zip(events, idents, ids, strict=True):
        key, current = event_key(event, event_id), known[ident]
        if current.last_key is not None and key <= tuple(current.last_key):
            return None  # arrived late: its key is refolded from its whole log
        state = apply(current, event, key)
        entries.append((event_id, *event_values(event, recorded_at)))
        saved.append((*state_values(state), event_id))
        after.append(state)
    await connection.execute(
        APPEND_MANY,
        *columns_of(entries, len(EVENT_TYPES)),
        *columns_of(saved, len(SAVED_TYPES)),
    )
    return after
