"""Statements of the outbox: a send's message from its reservation to its final outcome.

An attempt begins only for a due (pending or queued) message its worker holds the lease of, and
finishes only while it is in flight (``sending``): a second finish changes nothing. Only an
``unknown`` message is settled by a person (``storage.settlement``), once.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.sql.dialect import marks

MESSAGE_COLUMNS = (
    "id, app_id, idempotency_key, request_sha256, channel, user_id, template_id, payload, "
    "status, attempts, next_attempt_at, lease_owner, lease_until, platform_code, platform_msg, "
    "sub_code, sub_msg, last_error, created_at, updated_at, sent_at, recipients, skipped, "
    "warnings, ledger_channel, settled_reason, settled_by, settled_at"
)
MESSAGE_NAMES = tuple(MESSAGE_COLUMNS.split(", "))
_SELECT = f"SELECT {MESSAGE_COLUMNS} FROM messages"


@dataclass(frozen=True, slots=True)
class OutboxStatements:
    """Each statement of the outbox, neutral (``?``) until a dialect renders it."""

    message_of_key: str = f"{_SELECT} WHERE app_id = ? AND idempotency_key = ?"
    message_of_app: str = f"{_SELECT} WHERE app_id = ? AND id = ?"
    message_by_id: str = f"{_SELECT} WHERE id = ?"
    insert_message: str = (
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({marks(len(MESSAGE_NAMES))})"
    )
    created_since: str = (
        "SELECT created_at FROM messages WHERE app_id = ? AND channel = ? AND created_at > ?"
    )
    begin_attempt: str = (
        "UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_until = ?, "
        "updated_at = ? WHERE id = ? AND lease_owner = ? AND status IN ('pending', 'queued') "
        f"RETURNING {MESSAGE_COLUMNS}"
    )
    finish_attempt: str = (
        "UPDATE messages SET status = ?, next_attempt_at = ?, lease_owner = NULL, "
        "lease_until = NULL, platform_code = ?, platform_msg = ?, sub_code = ?, sub_msg = ?, "
        "last_error = ?, updated_at = ?, sent_at = ? WHERE id = ? AND status = 'sending' "
        f"RETURNING {MESSAGE_COLUMNS}"
    )
    settle_message: str = (
        "UPDATE messages SET status = ?, settled_reason = ?, settled_by = ?, settled_at = ?, "
        "updated_at = ? WHERE id = ? AND status = 'unknown' "
        f"RETURNING {MESSAGE_COLUMNS}"
    )
    count_messages: str = "SELECT count(*) FROM messages"
    count_messages_of_status: str = "SELECT count(*) FROM messages WHERE status = ?"
    message_counts: str = "SELECT channel, status, count(*) FROM messages GROUP BY 1, 2"


OUTBOX = OutboxStatements()
