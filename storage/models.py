"""What the store keeps, as pydantic models. Times are aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


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
    occurred_at: datetime
    source: ConsentSource
    evidence: str


class NotificationRecord(Frozen):
    """A verified notification, exactly as it will be kept."""

    app_id: str
    dedupe_key: str
    kind: str
    handler: str
    fields: dict[str, str]
    raw_body: bytes
    charset: str
    sign_type: str
    rule: str
    key_label: str
    occurred_at: datetime | None
    received_at: datetime


class StoredNotification(NotificationRecord):
    id: int


class RecordOutcome(Frozen):
    notification_id: int
    duplicate: bool


class RefusalCount(Frozen):
    app_id: str
    reason: str
    count: int
    last_at: datetime
