"""The consent ledger's statements: the append-only log, its projection, and the lookups.

The projection row of a key is saved with an upsert on its primary key: a new key's row is
inserted, a known key's row updated in place (PostgreSQL has locked it before).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.sql.dialect import BOUND_TEXT, marks

EVENT_COLUMNS = (
    "app_id, user_id, channel, template_id, action, occurred_at, source, evidence, keep, refuse"
)
STATE_COLUMNS = (
    "app_id, user_id, channel, template_id, status, credits, keep, refuse, updated_at, "
    "last_source, last_key, open_spends"
)
# What a lookup reads (``ConsentSummary``, in its field order): the state without the fold's
# bookkeeping columns.
SUMMARY_COLUMNS = "channel, template_id, status, credits, keep, refuse, updated_at, last_source"
# The channel as ``BOUND_TEXT``: the open mini-program keys' partial index names one (migration
# 0014), and a bare parameter there made SQLite prepare each key read again on every run.
KEY_WHERE = f"app_id = ? AND user_id = ? AND channel = {BOUND_TEXT} AND template_id = ?"
_STATE_UPDATES = ", ".join(
    f"{name} = excluded.{name}" for name in STATE_COLUMNS.split(", ")[4:]
)  # the columns after the key's four


@dataclass(frozen=True, slots=True)
class LedgerStatements:
    """Each statement of the ledger, neutral (``?``) until a dialect renders it."""

    insert_event: str = (
        f"INSERT INTO consent_events ({EVENT_COLUMNS}, recorded_at) VALUES ({marks(11)})"
    )
    # A state is saved with the id of the log entry whose append saved it (``changed_by``):
    # the ``consent.changed`` trigger reads that entry by its primary key (migration 0013).
    save_state: str = (
        f"INSERT INTO consents ({STATE_COLUMNS}, changed_by) VALUES ({marks(13)}) "
        "ON CONFLICT (app_id, user_id, channel, template_id) "
        f"DO UPDATE SET {_STATE_UPDATES}, changed_by = excluded.changed_by"
    )
    state_of_key: str = f"SELECT {STATE_COLUMNS} FROM consents WHERE {KEY_WHERE}"
    events_of_key: str = f"SELECT {EVENT_COLUMNS}, id FROM consent_events WHERE {KEY_WHERE}"
    history_of_key: str = (
        f"SELECT {EVENT_COLUMNS}, id, recorded_at FROM consent_events WHERE {KEY_WHERE}"
    )
    summary_of_key: str = f"SELECT {SUMMARY_COLUMNS} FROM consents WHERE {KEY_WHERE}"
    events_of_app: str = (
        f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE app_id = ? ORDER BY occurred_at, id"
    )
    events_of_user: str = (
        f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE app_id = ? AND user_id = ? "
        "ORDER BY occurred_at, id"
    )
    states_of_user: str = (
        f"SELECT {STATE_COLUMNS} FROM consents WHERE app_id = ? AND user_id = ? "
        "ORDER BY channel, template_id"
    )
    states_of_user_on_channel: str = (
        f"SELECT {STATE_COLUMNS} FROM consents WHERE app_id = ? AND user_id = ? "
        f"AND channel = {BOUND_TEXT} "
        "ORDER BY channel, template_id"
    )
    states_of_user_of_template: str = (
        f"SELECT {STATE_COLUMNS} FROM consents WHERE app_id = ? AND user_id = ? "
        "AND template_id = ? ORDER BY channel, template_id"
    )
    # The summaries of one template's keys for some users: the backend adds the membership test
    # (a list of parameters in SQLite, an array parameter in PostgreSQL).
    summaries_of_users: str = (
        f"SELECT {SUMMARY_COLUMNS}, user_id FROM consents "
        f"WHERE app_id = ? AND channel = {BOUND_TEXT} AND template_id = ? AND user_id"
    )
    recent_actions: str = (
        "SELECT count(*) FROM consent_events WHERE app_id = ? AND channel = ? AND action = ? "
        "AND (occurred_at >= ? OR recorded_at >= ?)"
    )


LEDGER = LedgerStatements()
