"""Event and delivery rows, both ways: events as the feed returns them, the heads the fan-out
filters on, deliveries with their attempts, and the values an attempt's verdict writes.

Rows are read back into models without validating them again (``Frozen.from_stored``): every
value was validated on its way in, each column is converted here to exactly the type the model holds
(times by ``storage.timecodec``, enums by value), and a claim builds several models per event
pushed.

A consent or message event's ``data`` is the JSON text its trigger wrote (SQLite's
``json_object``, PostgreSQL's ``json_build_object``): both write strings, integers and nulls
the same way, so parsed it is the same dict from either database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from storage.models import (
    ClaimedDelivery,
    Delivery,
    DeliveryAttempt,
    DeliveryHistory,
    DeliveryResult,
    DeliveryStatus,
    DeliveryVerdict,
    DestinationBacklog,
    EventHead,
    EventPosition,
    EventType,
    StoredEvent,
)
from storage.sql.events import DELIVERY_COLUMNS, TYPE_SLOTS
from storage.sql.notification_rows import stored_notification
from storage.sql.rows import Row
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

_EVENT_WIDTH = 8  # the event's own columns, before its notification's
_DELIVERY_NAMES = tuple(column.removeprefix("d.") for column in DELIVERY_COLUMNS.split(", "))
_DELIVERY_WIDTH = len(_DELIVERY_NAMES)
_DELIVERY_TIMES = ("next_attempt_at", "retry_since", "created_at", "updated_at")
_TYPES = frozenset(event_type.value for event_type in EventType)
# A page of a history: (status, at least this many attempts) of each state an operator reads.
HISTORY_STATES = {
    "pending": (DeliveryStatus.PENDING, 0),
    "failing": (DeliveryStatus.PENDING, 1),
    "delivered": (DeliveryStatus.DELIVERED, 0),
    "dead": (DeliveryStatus.DEAD, 0),
}
_STATUS_AFTER = {
    DeliveryVerdict.DELIVERED: DeliveryStatus.DELIVERED,
    DeliveryVerdict.RETRY: DeliveryStatus.PENDING,
    DeliveryVerdict.DEAD: DeliveryStatus.DEAD,
}
NO_ID_ABOVE = 2**63 - 1  # ``before_id`` when a history starts at its newest delivery

EventRead = tuple[EventPosition, EventHead, str | None]  # a row of ``HEAD_COLUMNS``


def type_slots(types: Iterable[str]) -> list[str | None] | None:
    """The feed's type parameters: the known types asked for, NULL in the slots left over;
    None when no type asked for exists (nothing can match)."""
    known = sorted(_TYPES.intersection(types))
    return [*known, *[None] * (TYPE_SLOTS - len(known))] if known else None


def stored_event(row: Row, start: int = 0) -> StoredEvent:
    """The event whose ``EVENT_COLUMNS`` start at column ``start``."""
    values = row[start : start + _EVENT_WIDTH]
    notification = row[start + _EVENT_WIDTH :]
    return StoredEvent.from_stored(
        {
            "id": values[0],
            "txid": values[1],
            "type": EventType(values[2]),
            "app_id": values[3],
            "user_id": values[4],
            "kind": values[5],
            "created_at": from_millis(values[6]),
            "data": None if values[7] is None else json.loads(values[7]),
            "notification": None if notification[0] is None else stored_notification(notification),
        }
    )


def event_read(row: Row) -> EventRead:
    """A row of ``HEAD_COLUMNS``: where the event stands, what filters see, whose it is."""
    return EventPosition(row[0], row[1]), EventHead(row[2], row[3], row[4]), row[5]


def delivery(row: Row) -> Delivery:
    """The delivery whose ``DELIVERY_COLUMNS`` start the row."""
    values = dict(zip(_DELIVERY_NAMES, row[:_DELIVERY_WIDTH], strict=True))
    read: dict[int, datetime] = {}  # a fresh delivery's four times are one instant: read once
    for name in _DELIVERY_TIMES:
        millis = values[name]
        time = read.get(millis)
        if time is None:
            time = read[millis] = from_millis(millis)
        values[name] = time
    values["delivered_at"] = optional_datetime(values["delivered_at"])
    values["status"] = DeliveryStatus(values["status"])
    return Delivery.from_stored(values)


def claimed(row: Row) -> ClaimedDelivery:
    """A row of ``due_deliveries``: the delivery, then its event."""
    return ClaimedDelivery.from_stored(
        {"delivery": delivery(row), "event": stored_event(row, _DELIVERY_WIDTH)}
    )


def new_delivery_values(destination: str, read: EventRead, now: int) -> tuple[Any, ...]:
    """The parameters of ``insert_delivery`` (and ``replay_or_insert_delivery``)."""
    position, head, user_id = read
    return (destination, *position, head.app_id, user_id, now, now, now, now)


def wanted_deliveries(
    destination: str, reads: Iterable[EventRead], wants: Callable[[EventHead], bool], now: int
) -> list[tuple[Any, ...]]:
    """The parameters of a new delivery (``insert_delivery``, ``replay_or_insert_delivery``)
    of each event read that the destination ``wants``."""
    return [new_delivery_values(destination, read, now) for read in reads if wants(read[1])]


def attempt_values(result: DeliveryResult) -> tuple[Any, ...]:
    """The parameters of ``insert_attempt``."""
    attempt = result.attempt
    return (
        result.delivery_id,
        to_millis(attempt.attempted_at),
        attempt.status_code,
        attempt.latency_ms,
        attempt.error,
    )


def verdict_values(result: DeliveryResult, owner: str) -> tuple[Any, ...]:
    """The parameters of ``apply_verdict``: the delivery as its attempt leaves it, at the
    attempt's time (a retry without a time of its own is due at once)."""
    at = to_millis(result.attempt.attempted_at)
    verdict = result.verdict
    retry = verdict is DeliveryVerdict.RETRY
    return (
        _STATUS_AFTER[verdict].value,
        (optional_millis(result.next_attempt_at) or at) if retry else None,
        at if verdict is DeliveryVerdict.DELIVERED else None,
        result.attempt.status_code,
        result.attempt.error,
        at,
        result.delivery_id,
        owner,
    )


def backlog(row: Row) -> DestinationBacklog:
    """A row of ``backlogs``."""
    return DestinationBacklog(
        destination=row[0],
        pending=row[1],
        failing=row[2],
        dead=row[3],
        oldest_pending_at=optional_datetime(row[4]),
        last_error=row[5],
        last_error_at=optional_datetime(row[6]),
    )


def histories(rows: Sequence[Row]) -> list[DeliveryHistory]:
    """Rows of ``histories`` (a delivery's rows together, one per attempt, or one without any)
    as each delivery with its attempts, in the rows' order."""
    found: dict[int, tuple[Delivery, EventType, list[DeliveryAttempt]]] = {}
    for row in rows:
        if row[0] not in found:
            found[row[0]] = (delivery(row), EventType(row[_DELIVERY_WIDTH]), [])
        if row[_DELIVERY_WIDTH + 1] is not None:
            found[row[0]][2].append(_attempt(row[_DELIVERY_WIDTH + 1 :]))
    return [
        DeliveryHistory(delivery=d, event_type=event_type, attempts=tuple(attempts))
        for d, event_type, attempts in found.values()
    ]


def _attempt(values: Sequence[Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        attempted_at=from_millis(values[0]),
        status_code=values[1],
        latency_ms=values[2],
        error=values[3],
    )
