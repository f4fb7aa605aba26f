"""What the store keeps, as pydantic models. Times are aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, NamedTuple, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from storage.timecodec import from_millis, to_millis
from verify.form import parse_form


def _stored_precision(value: datetime) -> datetime:
    """Aware UTC at millisecond precision: exactly what every backend stores and reads back."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # already so (every time read back from a store): a tenth of the work
    if value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return from_millis(to_millis(value))


Instant = Annotated[datetime, AfterValidator(_stored_precision)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConsentAction(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CANCEL = "cancel"
    SPEND = "spend"
    REFUND = "refund"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    GRANT = "grant"
    REVOKE = "revoke"


class ConsentStatus(StrEnum):
    NONE = "none"
    SUBSCRIBED = "subscribed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FOLLOWED = "followed"
    UNFOLLOWED = "unfollowed"
    GRANTED = "granted"
    REVOKED = "revoked"


class TemplateKind(StrEnum):
    ONE_TIME = "one_time"
    LONG_TERM = "long_term"
    UNKNOWN = "unknown"  # reported but not registered: treated as one-time (conservative)


class Channel(StrEnum):
    MINI_TEMPLATE = "mini_template"
    LIFE_ACCOUNT = "life_account"
    JYM_PUSH = "jym_push"
    WORKCORE = "workcore"


OPT_IN_CHANNELS = frozenset({Channel.JYM_PUSH, Channel.WORKCORE})


class ConsentSource(StrEnum):
    CLIENT_REPORT = "client_report"
    ALIPAY_NOTIFY = "alipay_notify"
    PLATFORM_QUERY = "platform_query"
    SEND = "send"
    OPERATOR = "operator"


class ConsentEvent(Frozen):
    """One entry of the append-only consent log of (app, user, channel, template)."""

    app_id: str
    user_id: str
    channel: str
    template_id: str
    action: ConsentAction
    occurred_at: Instant
    source: ConsentSource
    evidence: str
    keep: bool | None = None  # one-time template: "always keep this choice"
    refuse: bool | None = None  # long-term template: "reject and don't ask again"


class StoredConsentEvent(ConsentEvent):
    id: int
    recorded_at: Instant


class ConsentState(Frozen):
    """The projection of one (app, user, channel, template): always the fold of its log."""

    app_id: str
    user_id: str
    channel: str
    template_id: str
    status: ConsentStatus = ConsentStatus.NONE
    credits: int = 0
    keep: bool = False
    refuse: bool = False
    updated_at: Instant | None = None
    last_source: ConsentSource | None = None
    # The sort key of the last event applied, and spends a refund may still give back.
    last_key: tuple[int, int, str, str, str, int] | None = None
    open_spends: tuple[str, ...] = ()


class ConsentSummary(NamedTuple):
    """What a lookup answers from: one key's state without the fold's bookkeeping
    (``last_key``, ``open_spends``), which only the writer needs.

    A plain tuple read straight from the projection's columns, not a validated model: lookups
    are the ledger's hottest reads, and reading and validating whole states was about a fifth of
    a single lookup's CPU and half of a bulk lookup's time (bench/README.md). Every row it is read
    from was written from a validated ``ConsentState``.
    """

    channel: str
    template_id: str
    status: ConsentStatus
    credits: int
    keep: bool
    refuse: bool
    updated_at: datetime | None
    last_source: ConsentSource | None

    @classmethod
    def empty(cls, channel: str, template_id: str) -> ConsentSummary:
        """A key the ledger has never heard of: nothing granted."""
        return cls(channel, template_id, ConsentStatus.NONE, 0, False, False, None, None)


class SubscribeReport(Frozen):
    """A ``my.requestSubscribeMessage`` result as the mini-program reported it."""

    app_id: str
    user_id: str
    idempotency_key: str
    body_sha256: str
    body: str
    received_at: Instant


class ReportOutcome(Frozen):
    report_id: int
    replayed: bool
    conflict: bool
    outcome: str  # the JSON answer given the first time


class NotificationRecord(Frozen):
    """A verified notification, exactly as it will be kept."""

    app_id: str
    dedupe_key: str
    kind: str
    handler: str
    raw_body: bytes
    charset: str
    sign_type: str
    rule: str
    key_label: str
    occurred_at: Instant | None
    received_at: Instant

    @property
    def fields(self) -> dict[str, str]:
        """The decoded fields, derived from the exact bytes received (never stored twice)."""
        return dict(parse_form(self.raw_body, self.charset).fields)


class StoredNotification(NotificationRecord):
    id: int


class RecordOutcome(Frozen):
    notification_id: int
    duplicate: bool


class RefusalCount(Frozen):
    app_id: str
    reason: str
    count: int
    last_at: Instant


class MessageStatus(StrEnum):
    PENDING = "pending"  # reserved, not yet attempted
    SENDING = "sending"  # an attempt is in flight
    QUEUED = "queued"  # a transient failure; retried at next_attempt_at
    SENT = "sent"
    FAILED = "failed"  # definite: the credit was refunded
    UNKNOWN = "unknown"  # the outcome cannot be known (crash in flight, unverifiable answer)


FINAL_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.UNKNOWN})


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
        return self.ledger_channel or self.channel


class MessageRecord(Frozen):
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

    @property
    def consent_channel(self) -> str:
        return self.ledger_channel or self.channel

    @property
    def allowed(self) -> tuple[str, ...]:
        """Whom the message goes to (a store that keeps no recipients: the one ``user_id``)."""
        return self.recipients or (self.user_id,)


class ReserveOutcome(Frozen):
    message: MessageRecord
    replayed: bool  # the key was used before with the same request: nothing new was reserved
    begun: bool = False  # its first attempt began in the reservation's transaction (``sending``)


class AttemptOutcome(StrEnum):
    SENT = "sent"
    REJECTED = "rejected"  # definite failure: refund
    RETRY = "retry"  # transient: queue for next_attempt_at
    EXHAUSTED = "exhausted"  # transient, out of attempts: refund and fail
    UNKNOWN = "unknown"  # unverifiable: keep the credit spent, never retry


class AttemptResult(Frozen):
    outcome: AttemptOutcome
    platform_code: str | None = None
    platform_msg: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None
    error: str | None = None
    next_attempt_at: Instant | None = None
