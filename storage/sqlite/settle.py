"""Settling an ``unknown`` message on SQLite (``storage.settlement``), inside one writer job: the
single writer runs one settle at a time, so a second settle of a message finds it settled."""

from __future__ import annotations

import sqlite3

from storage.models import MessageRecord, Settlement
from storage.sending import recipient_key
from storage.settlement import check_settleable, settle_events, settled_values
from storage.sql.dialect import SQLITE
from storage.sql.outbox_rows import message_from_row
from storage.sql.statements import statements_for
from storage.sqlite.consents import append_events, load_state
from storage.timecodec import to_millis

SQL = statements_for(SQLITE).outbox


def settle_message(
    connection: sqlite3.Connection, app_id: str, message_id: str, settlement: Settlement
) -> MessageRecord | None:
    """As ``Store.settle_message`` says; every refusal comes before the first write."""
    row = connection.execute(SQL.message_of_app, (app_id, message_id)).fetchone()
    if row is None:
        return None
    message = message_from_row(row)
    check_settleable(message)
    settled = connection.execute(SQL.settle_message, settled_values(message_id, settlement))
    message = message_from_row(settled.fetchone())
    keys = {user_id: recipient_key(message, user_id) for user_id in message.allowed}
    states = {user_id: load_state(connection, key) for user_id, key in keys.items()}
    events = settle_events(message, settlement, states)
    append_events(connection, events, to_millis(settlement.settled_at), known=states)
    return message
