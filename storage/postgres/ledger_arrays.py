"""The consent ledger's rows as array parameters on PostgreSQL, for the writes that append to
several keys in one statement (a batch of reservations, a batch of subscribe reports): each
column one array, typed, given to ``unnest``."""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Sequence

from storage.sql.dialect import POSTGRES
from storage.sql.ledger import EVENT_COLUMNS, STATE_COLUMNS

STATE_NAMES = STATE_COLUMNS.split(", ")
SAVED_NAMES = [*STATE_NAMES[4:], "changed_by"]  # what is saved, after a key's four columns
# A saved state's columns, then the id of the ledger entry that changed it (``changed_by``).
SAVED_TYPES = ("text",) * 5 + ("int", "bool", "bool", "bigint", "text", "text", "text", "bigint")
# A ledger entry: its id (drawn before it is written), its columns, when it was recorded.
EVENT_TYPES = ("bigint",) + ("text",) * 5 + ("bigint", "text", "text", "bool", "bool", "bigint")
KEY_NAMES = ", ".join(STATE_NAMES[:4])
KEY_MATCH = " AND ".join(f"c.{name} = x.{name}" for name in STATE_NAMES[:4])
SET_SAVED = ", ".join(f"{name} = x.{name}" for name in SAVED_NAMES)
NEW_EVENT_IDS = POSTGRES.render(
    "SELECT nextval(pg_get_serial_sequence('consent_events', 'id')) FROM generate_series(1, ?)"
)


def arrays(types: Sequence[str]) -> str:
    """Rows given as one array parameter per column."""
    return f"unnest({', '.join(f'?::{kind}[]' for kind in types)})"


# Ledger entries and the states they leave, each key once: one statement, so the entries and the
# saves (each firing its ``consent.changed``, which reads the entry it names) commit together.
APPEND_MANY = POSTGRES.render(
    f"WITH spent AS (INSERT INTO consent_events (id, {EVENT_COLUMNS}, recorded_at) "
    f"OVERRIDING SYSTEM VALUE SELECT * FROM {arrays(EVENT_TYPES)}) "
    f"UPDATE consents AS c SET {SET_SAVED} "
    f"FROM {arrays(SAVED_TYPES)} AS x({STATE_COLUMNS}, changed_by) WHERE {KEY_MATCH}"
)
