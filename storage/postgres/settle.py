"""Settling an ``unknown`` message on PostgreSQL (``storage.settlement``), in one transaction:
the message's row is locked first (as a finishing attempt locks it), so of two settles racing
on any replicas the second waits, then finds the message settled and refuses."""

from __future__ import annotations

from storage.models import MessageRecord, Settlement
from storage.postgres.connection import Conn
from storage.postgres.consents import append_events, lock_states
from storage.sending import recipient_key
from storage.settlement import check_settleable, settle_events, settled_values
from storage.sql.dialect import POSTGRES
from storage.sql.outbox import OUTBOX
from storage.sql.outbox_rows import message_from_row
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(POSTGRES).outbox
_LOCK_MESSAGE_OF_APP = POSTGRES.render(f"{OUTBOX.message_of_app} FOR UPDATE")


async def settle_message(
    connection: Conn, app_id: str, message_id: str, settlement: Settlement
) -> MessageRecord | None:
    """As ``Store.settle_message`` says."""
    locked = await connection.fetchrow(_LOCK_MESSAGE_OF_APP, app_id, message_id)
    if locked is None:
        return None
    check_settleable(message_from_row(locked))
    row = await connection.fetchrow(SQL.settle_message, *settled_values(message_id, settlement))
    assert row is not None  # locked and unknown
    message = message_from_row(row)
    keys = {user_id: recipient_key(message, user_id) for user_id in message.allowed}
    locked_states = await lock_states(connection, keys.values())
    states = {user_id: locked_states[key] for user_id, key in keys.items()}
    events = settle_events(message, settlement, states)
    await append_events(connection, events, to_millis(settlement.settled_at))
    return message
