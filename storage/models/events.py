"""The event log and its deliveries: what Subgate hands on, and how each hand-over went.

An event is written by the database in the same statement as its cause (the migrations'
triggers); a delivery is one event on its way to one destination, with its attempts. These are
the values the store returns; what an event's payload says is the server's to build.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from storage.models.frozen import Frozen, Instant
from storage.models.notifications import StoredNotification


class EventType(StrEnum):
    """What an event reports."""

    NOTIFICATION_RECEIVED = "notification.received"
    CONSENT_CHANGED = "consent.changed"
    MESSAGE_UPDATED = "message.updated"


class EventPosition(NamedTuple):
    """Where an event stands in the log's order: (writing transaction, id).

    SQLite commits in id order and keeps ``txid`` 0; PostgreSQL hands ids out before commit, so
    its order is the writing transaction's id first (``0006_events.sql``).
    """

    txid: int
    id: int


START = EventPosition(0, 0)  # before every event


class StoredEvent(Frozen):
    """One event of the log. ``data`` is the snapshot a consent or message event was written
    with; a notification's event carries the stored ``notification`` instead (None once the
    notification has been pruned)."""

    id: int
    txid: int
    type: EventType
    app_id: str
    user_id: str | None
    kind: str | None
    created_at: Instant
    data: dict[str, Any] | None = None
    notification: StoredNotification | None = None

    @property
    def position(self) -> EventPosition:
        """The event's place in the log's order."""
        return EventPosition(self.txid, self.id)


class EventHead(NamedTuple):
    """What a destination's filters look at: the event's type, app and notification kind."""

    type: str
    app_id: str
    kind: str | None


class DeliveryStatus(StrEnum):
    """Where one event stands on its way to one destination."""

    PENDING = "pending"  # due at next_attempt_at (failing once it has attempts)
    DELIVERED = "delivered"
    DEAD = "dead"  # given up; kept, and replayable


class DeliveryVerdict(StrEnum):
    """What an attempt's result means for its delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"  # due again at the result's next_attempt_at
    DEAD = "dead"


class DeliveryAttempt(Frozen):
    """One attempt to hand an event to a destination, as kept."""

    attempted_at: Instant
    status_code: int | None  # None: no answer (timeout, refused connection)
    latency_ms: int
    error: str | None = None


class DeliveryResult(Frozen):
    """An attempt and what it decides, as the delivery worker reports it."""

    delivery_id: int
    attempt: DeliveryAttempt
    verdict: DeliveryVerdict
    next_attempt_at: Instant | None = None  # RETRY only


class Delivery(Frozen):
    """One event on its way to one destination."""

    id: int
    destination: str
    event_id: int
    app_id: str
    user_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Instant
    retry_since: Instant
    last_status: int | None
    last_error: str | None
    created_at: Instant
    updated_at: Instant
    delivered_at: Instant | None


class ClaimedDelivery(Frozen):
    """A delivery leased to one worker, with the event it carries."""

    delivery: Delivery
    event: StoredEvent


class DeliveryHistory(Frozen):
    """A delivery with every attempt, oldest first: what an operator reads."""

    delivery: Delivery
    event_type: EventType
    attempts: tuple[DeliveryAttempt, ...]


class DestinationBacklog(Frozen):
    """Where one destination stands: what waits, what fails, what died."""

    destination: str
    pending: int = 0
    failing: int = 0  # pending with at least one failed attempt
    dead: int = 0
    oldest_pending_at: Instant | None = None  # created_at of the oldest pending delivery
    last_error: str | None = None
    last_error_at: Instant | None = None


class DeliveryRound(NamedTuple):
    """One pass of a destination's worker, asked of the store as one transaction: keep the
    verdicts of a batch whose posts are answered, fan out new events, claim the next batch. One
    commit instead of three: the pass's pace is set by the store's round trips, not its rows."""

    destination: str
    owner: str
    kept: tuple[DeliveryResult, ...]
    now: Instant
    lease_until: Instant
    fan_out_limit: int
    claim_limit: int


class RoundOutcome(NamedTuple):
    """What a ``DeliveryRound`` did: events read by its fan-out, verdicts applied, the batch
    now leased."""

    read: int
    applied: int
    claimed: list[ClaimedDelivery]
