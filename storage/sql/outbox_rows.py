"""Outbox rows, both ways: a new message's row, an attempt's finish, a message read back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.jsontext import compact_json, json_list
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    MessageRecord,
    MessageStatus,
    SendReservation,
    Settlement,
    SettleOutcome,
    SkippedRecipient,
)
from storage.sending import status_after
from storage.sql.outbox import MESSAGE_NAMES
from storage.sql.rows import Row
from storage.timecodec import from_millis, optional_datetime, to_millis

_TIMES = ("next_attempt_at", "created_at", "updated_at")
_OPTIONAL_TIMES = ("lease_until", "sent_at")
_JSON_LISTS = ("recipients", "skipped", "warnings")


def message_from_row(row: Row) -> MessageRecord:
    """A row of ``MESSAGE_COLUMNS`` (read back, or the parameters of ``insert_message``)."""
    values = dict(zip(MESSAGE_NAMES, row, strict=True))
    for name in _TIMES:
        values[name] = from_millis(values[name])
    for name in _OPTIONAL_TIMES:
        values[name] = optional_datetime(values[name])
    for name in _JSON_LISTS:
        values[name] = json_list(values[name])
    values["settlement"] = _settlement(values)
    return MessageRecord.model_validate(values)


def _settlement(values: dict[str, Any]) -> Settlement | None:
    """The settle kept in a row's ``settled_*`` columns (taken out of ``values``); its outcome
    is the status it left."""
    reason, by, at = (values.pop(f"settled_{name}") for name in ("reason", "by", "at"))
    if at is None:
        return None
    delivered = values["status"] == MessageStatus.SETTLED_DELIVERED
    outcome = SettleOutcome.DELIVERED if delivered else SettleOutcome.NOT_DELIVERED
    return Settlement(outcome=outcome, reason=reason, settled_by=by, settled_at=from_millis(at))


def new_message_row(
    r: SendReservation, allowed: list[str], skipped: list[SkippedRecipient], *, begun: bool = False
) -> tuple[Any, ...]:
    """The outbox row of a new reservation: pending, or ``begun``: its first attempt already in
    flight (``sending``, attempt 1), exactly as ``begin_attempt`` would leave the pending row at
    its creation time, with one statement fewer."""
    created = to_millis(r.created_at)
    return (
        r.message_id,
        r.app_id,
        r.idempotency_key,
        r.request_sha256,
        r.channel,
        allowed[0],
        r.template_id,
        r.payload,
        (MessageStatus.SENDING if begun else MessageStatus.PENDING).value,
        1 if begun else 0,
        created,
        r.lease_owner,
        to_millis(r.lease_until),
        None,
        None,
        None,
        None,
        None,
        created,
        created,
        None,
        compact_json(allowed),
        compact_json([s.model_dump() for s in skipped]),
        compact_json(list(r.warnings)),
        r.consent_channel,
        None,
        None,
        None,
    )


def finish_values(
    message_id: str, result: AttemptResult, now: datetime
) -> tuple[MessageStatus, tuple[Any, ...]]:
    """The status an attempt's outcome leaves its message in, and the parameters of
    ``finish_attempt``: a retry waits until ``next_attempt_at``, anything else is settled now."""
    status = status_after(result.outcome)
    next_at = result.next_attempt_at if result.outcome is AttemptOutcome.RETRY else now
    at = to_millis(now)
    return status, (
        status.value,
        to_millis(next_at or now),
        result.platform_code,
        result.platform_msg,
        result.sub_code,
        result.sub_msg,
        result.error,
        at,
        at if status is MessageStatus.SENT else None,
        message_id,
    )
