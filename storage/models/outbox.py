"""The outbox's values: a send's reservation, its message, and the outcome of each attempt."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from storage.models.consent import TemplateKind
from storage.models.frozen import Frozen, Instant


class MessageStatus(StrEnum):
    """Where a message is between its reservation and its final outcome."""

    PENDING = "pending"  # reserved, not yet attempted
    SENDING = "sending"  # an attempt is in flight
    QUEUED = "queued"  # a transient failure; retried at next_attempt_at
    SENT = "sent"
    FAILED = "failed"  # definite: the credit was refunded
    UNKNOWN = "unknown"  # the outcome cannot be known (crash in flight, unverifiable answer)
    SETTLED_DELIVERED = "settled_delivered"  # unknown, then a person said delivered: spent
    SETTLED_NOT_DELIVERED = "settled_not_delivered"  # unknown, then not delivered: refunded


FINAL_STATUSES = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.FAILED,
        MessageStatus.UNKNOWN,
        MessageStatus.SETTLED_DELIVERED,
        MessageStatus.SETTLED_NOT_DELIVERED,
    }
)


ConsentMode = Literal["single", "split", "none"]
WEEK_SECONDS = 7 * 24 * 3600


class SkippedRecipient(Frozen):
    """A recipient left out of a send, and why (``consent_required``)."""

    user_id: str
    reason: str


class SendReservation(Frozen):
    """Everything needed to reserve consent for one send and queue it.

    The options after ``created_at`` default to the one-recipient send of a template message:

    ``recipients``      ledger user ids to check; empty means the one ``user_id``
    ``consent_mode``    ``single``: the one recipient must be allowed, else ``ConsentRequired``;
                        ``split``: keep only the allowed recipients, ``ConsentRequired`` if none;
                        ``none``: no per-user check (the platform picks the audience)
    ``weekly_limit``    at most this many messages of the app and channel created in the rolling
                        ``limit_window_seconds`` (every one counts, whatever its outcome), else
                        ``WeeklyLimitReached``; None: no limit
    ``ledger_channel``  the ledger channel consent is checked and spent on; None: ``channel``
    ``warnings``        kept with the message and shown with it

    Each allowed recipient gets a ``spend`` event; the row's ``user_id`` is the first of them.
    Every check runs inside the reservation's transaction.
    """

    message_id: str
    app_id: str
    idempotency_key: str
    request_sha256: str
    channel: str
    user_id: str
    template_id: str
    kind: TemplateKind
    payload: str
    lease_owner: str
    lease_until: Instant
    created_at: Instant
    recipients: tuple[str, ...] = ()
    consent_mode: ConsentMode = "single"
    weekly_limit: int | None = Field(default=None, ge=1)
    limit_window_seconds: int = Field(default=WEEK_SECONDS, gt=0)
    ledger_channel: str | None = None
    warnings: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _recipients(self) -> Self:
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients must be unique")
        if self.consent_mode == "single" and len(self.candidates) != 1:
            raise ValueError("consent_mode single takes exactly one recipient")
        return self

    @property
    def candidates(self) -> tuple[str, ...]:
        """The ledger user ids this send is for, before the consent check."""
        return self.recipients or (self.user_id,)

    @property
    def consent_channel(self) -> str:
        """The ledger channel consent is checked and spent on."""
        return self.ledger_channel or self.channel


class SettleOutcome(StrEnum):
    """What a person found out about an ``unknown`` message (``Store.settle_message``)."""

    DELIVERED = "delivered"  # the credit stays spent
    NOT_DELIVERED = "not_delivered"  # each recipient's spend is refunded

    @property
    def status(self) -> MessageStatus:
        """The final status a settle of this outcome leaves its message in."""
        if self is SettleOutcome.DELIVERED:
            return MessageStatus.SETTLED_DELIVERED
        return MessageStatus.SETTLED_NOT_DELIVERED


class Settlement(Frozen):
    """Who settled an ``unknown`` message, how and why: kept on the message and, as the
    evidence of an ``operator`` event, in each recipient's ledger."""

    outcome: SettleOutcome
    reason: str
    settled_by: str  # the caller's identity (an API token's fingerprint), never a secret
    settled_at: Instant


class MessageRecord(Frozen):
    """A message of the outbox as stored: what it sends, to whom, and how its attempts went."""

    id: str
    app_id: str
    idempotency_key: str
    request_sha256: str
    channel: str
    user_id: str
    template_id: str
    payload: str
    status: MessageStatus
    attempts: int
    next_attempt_at: Instant
    lease_owner: str | None
    lease_until: Instant | None
    platform_code: str | None
    platform_msg: str | None
    sub_code: str | None
    sub_msg: str | None
    last_error: str | None
    created_at: Instant
    updated_at: Instant
    sent_at: Instant | None
    recipients: tuple[str, ...] = ()  # the allowed recipients (each has a spend event)
    skipped: tuple[SkippedRecipient, ...] = ()
    warnings: tuple[str, ...] = ()
    ledger_channel: str = ""  # empty: the message's channel
    settlement: Settlement | None = None  # how a person settled it, once it was ``unknown``

    @property
    def consent_channel(self) -> str:
        """The ledger channel consent is checked and spent on."""
        return self.ledger_channel or self.channel

    @property
    def allowed(self) -> tuple[str, ...]:
        """Whom the message goes to (a store that keeps no recipients: the one ``user_id``)."""
        return self.recipients or (self.user_id,)


class ReserveOutcome(Frozen):
    """The message a reservation made (or found, for a replay)."""

    message: MessageRecord
    replayed: bool  # the key was used before with the same request: nothing new was reserved
    begun: bool = False  # its first attempt began in the reservation's transaction (``sending``)


class AttemptOutcome(StrEnum):
    """What an attempt's answer means for the message and for the recipients' spends."""

    SENT = "sent"
    REJECTED = "rejected"  # definite failure: refund
    RETRY = "retry"  # transient: queue for next_attempt_at
    EXHAUSTED = "exhausted"  # transient, out of attempts: refund and fail
    UNKNOWN = "unknown"  # unverifiable: keep the credit spent, never retry


class AttemptResult(Frozen):
    """An attempt's outcome with what the platform answered: kept on the message."""

    outcome: AttemptOutcome
    platform_code: str | None = None
    platform_msg: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None
    error: str | None = None
    next_attempt_at: Instant | None = None
