"""What the /v1/destinations routes answer: each destination's filters and state, its deliveries
with every attempt, and how many deliveries a replay made due.

A destination's URL is shown as ``DestinationSettings.shown_url`` (without user, password or
query, any of which may carry a credential); an attempt's error is the short text the push wrote,
which never repeats the URL (``server.delivery.posting``). The signing secrets are never read here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from server.events.payloads import EVENT_ID_PREFIX
from server.settings import DestinationSettings
from storage.models import (
    DeliveryAttempt,
    DeliveryHistory,
    DeliveryStatus,
    DestinationBacklog,
    EventType,
)

DeliveryState = Literal["pending", "failing", "delivered", "dead"]


class DestinationState(BaseModel):
    """Where a destination stands: what waits, what fails, what died, and the last error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backlog: int = Field(description="Deliveries not delivered yet (failing ones included).")
    failing: int = Field(description="Of the backlog, those with at least one failed attempt.")
    dead: int = Field(description="Given up after give_up_after_seconds; replayable.")
    oldest_undelivered_age_seconds: float | None = Field(
        description="How long the oldest delivery of the backlog has waited (null: none)."
    )
    last_error: str | None
    last_error_at: datetime | None


class DestinationView(BaseModel):
    """One ``[[destinations]]`` entry as configured (never its secret), and its state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str = Field(description="Without user, password or query.")
    apps: list[str] | None = Field(description="null: every app.")
    events: list[str] | None = Field(description="Globs on the type; null: every type.")
    kinds: list[str] | None = Field(description="Globs on a notification's kind; null: all.")
    state: DestinationState


class DestinationList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    destinations: list[DestinationView]


class AttemptView(BaseModel):
    """One attempt to hand an event over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempted_at: datetime
    status_code: int | None = Field(description="null: no answer (timeout, refused connection).")
    latency_ms: int
    error: str | None


class DeliveryView(BaseModel):
    """One event on its way to the destination, with every attempt, oldest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(description="The delivery's id: pass the last one as before= for more.")
    event_id: str = Field(description="evt_...: the webhook-id of every attempt.")
    event_type: EventType
    app_id: str
    user_id: str | None
    status: DeliveryState
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending).")
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptView]


class DeliveryPage(BaseModel):
    """Deliveries in one state, newest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deliveries: list[DeliveryView]
    next_before: int | None = Field(description="Pass as before= for the next page (null: none).")


class ReplayWindow(BaseModel):
    """Replay every event written since a time (after an outage of the destination)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: AwareDatetime = Field(description="ISO 8601 with a time zone.")


class ReplayAnswer(BaseModel):
    """How many deliveries a replay made due now (each keeps its event's id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    destination: str
    replayed: int


def destination_view(
    destination: DestinationSettings, backlog: DestinationBacklog | None, now: datetime
) -> DestinationView:
    """A configured destination and its backlog (None: it never had a delivery)."""
    backlog = backlog or DestinationBacklog(destination=destination.name)
    oldest = backlog.oldest_pending_at
    state = DestinationState(
        backlog=backlog.pending,
        failing=backlog.failing,
        dead=backlog.dead,
        oldest_undelivered_age_seconds=None if oldest is None else (now - oldest).total_seconds(),
        last_error=backlog.last_error,
        last_error_at=backlog.last_error_at,
    )
    return DestinationView(
        name=destination.name,
        url=destination.shown_url,
        apps=destination.apps,
        events=destination.events,
        kinds=destination.kinds,
        state=state,
    )


def delivery_view(history: DeliveryHistory) -> DeliveryView:
    """A delivery as an operator reads it."""
    delivery = history.delivery
    pending = delivery.status is DeliveryStatus.PENDING
    return DeliveryView(
        id=delivery.id,
        event_id=f"{EVENT_ID_PREFIX}{delivery.event_id}",
        event_type=history.event_type,
        app_id=delivery.app_id,
        user_id=delivery.user_id,
        status=_state(delivery.status, delivery.attempts),
        next_attempt_at=delivery.next_attempt_at if pending else None,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempts=[_attempt(attempt) for attempt in history.attempts],
    )


def _state(status: DeliveryStatus, attempts: int) -> DeliveryState:
    if status is DeliveryStatus.PENDING:
        return "failing" if attempts else "pending"
    return "delivered" if status is DeliveryStatus.DELIVERED else "dead"


def _attempt(attempt: DeliveryAttempt) -> AttemptView:
    return AttemptView(
        attempted_at=attempt.attempted_at,
        status_code=attempt.status_code,
        latency_ms=attempt.latency_ms,
        error=attempt.error,
    )
