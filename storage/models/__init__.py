"""What the store keeps, as pydantic models: the values every backend writes and reads back.

Times are aware UTC datetimes at millisecond precision (``frozen``); the consent ledger's values
live in ``consent``, notifications in ``notifications``, the outbox's in ``outbox``. Everything is
re-exported here, so ``from storage.models import X`` is the one way in. These modules may import
pydantic, the standard library and ``storage.timecodec``; nothing of a backend, the server or the
verifier.
"""

from __future__ import annotations

from storage.models.consent import (
    OPT_IN_CHANNELS,
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    ReportAnswer,
    ReportOutcome,
    StoredConsentEvent,
    SubscribeReport,
    TemplateKind,
)
from storage.models.console import MessageAttempt, MessageQuery, NotificationQuery, TimeBucket
from storage.models.events import (
    START,
    ClaimedDelivery,
    Delivery,
    DeliveryAttempt,
    DeliveryHistory,
    DeliveryResult,
    DeliveryRound,
    DeliveryStatus,
    DeliveryVerdict,
    DestinationBacklog,
    EventHead,
    EventPosition,
    EventType,
    RoundOutcome,
    StoredEvent,
)
from storage.models.frozen import Frozen, Instant
from storage.models.notifications import (
    NotificationRecord,
    RecordOutcome,
    RefusalCount,
    StoredNotification,
)
from storage.models.outbox import (
    FINAL_STATUSES,
    WEEK_SECONDS,
    AttemptOutcome,
    AttemptResult,
    ConsentMode,
    MessageRecord,
    MessageStatus,
    ReserveOutcome,
    SendReservation,
    Settlement,
    SettleOutcome,
    SkippedRecipient,
)

__all__ = [
    "FINAL_STATUSES",
    "OPT_IN_CHANNELS",
    "START",
    "WEEK_SECONDS",
    "AttemptOutcome",
    "AttemptResult",
    "ClaimedDelivery",
    "ConsentAction",
    "ConsentChannel",
    "ConsentEvent",
    "ConsentMode",
    "ConsentSource",
    "ConsentState",
    "ConsentStatus",
    "ConsentSummary",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryHistory",
    "DeliveryResult",
    "DeliveryRound",
    "DeliveryStatus",
    "DeliveryVerdict",
    "DestinationBacklog",
    "EventHead",
    "EventPosition",
    "EventType",
    "Frozen",
    "Instant",
    "MessageAttempt",
    "MessageQuery",
    "MessageRecord",
    "MessageStatus",
    "NotificationQuery",
    "NotificationRecord",
    "RecordOutcome",
    "RefusalCount",
    "ReportAnswer",
    "ReportOutcome",
    "ReserveOutcome",
    "RoundOutcome",
    "SendReservation",
    "SettleOutcome",
    "Settlement",
    "SkippedRecipient",
    "StoredConsentEvent",
    "StoredEvent",
    "StoredNotification",
    "SubscribeReport",
    "TemplateKind",
    "TimeBucket",
]
