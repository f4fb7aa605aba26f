"""Bodies of the /v1 messages routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from storage.models import FINAL_STATUSES, MessageRecord, MessageStatus, SettleOutcome


class PlatformAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str | None
    msg: str | None
    sub_code: str | None
    sub_msg: str | None


class Skipped(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    user_id: str
    reason: str = Field(description="Why this recipient was left out: consent_required.")


class SettlementView(BaseModel):
    """How a person settled a message whose outcome was unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    outcome: SettleOutcome
    reason: str
    settled_by: str = Field(description="Who settled it: the API token's fingerprint.")
    settled_at: datetime


class MessageView(BaseModel):
    """A message as the outbox holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: str
    status: MessageStatus
    channel: str
    user_id: str
    template_id: str
    attempts: int
    platform: PlatformAnswer | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    recipients: list[str] = Field(
        description="Whom the message goes to: ledger user ids the ledger allowed "
        "(life_label: the label key)."
    )
    skipped: list[Skipped] = Field(description="Recipients left out, with the reason.")
    warnings: list[str] = Field(description="What the caller should know about this delivery.")
    settlement: SettlementView | None = Field(
        default=None, description="Set once a person settled the message's unknown outcome."
    )

    @classmethod
    def of(cls, message: MessageRecord) -> MessageView:
        answered = message.platform_code is not None or message.sub_code is not None
        return cls(
            message_id=message.id,
            status=message.status,
            channel=message.channel,
            user_id=message.user_id,
            template_id=message.template_id,
            attempts=message.attempts,
            platform=PlatformAnswer(
                code=message.platform_code,
                msg=message.platform_msg,
                sub_code=message.sub_code,
                sub_msg=message.sub_msg,
            )
            if answered
            else None,
            last_error=message.last_error,
            created_at=message.created_at,
            updated_at=message.updated_at,
            sent_at=message.sent_at,
            next_attempt_at=message.next_attempt_at
            if message.status in (MessageStatus.QUEUED, MessageStatus.PENDING)
            else None,
            recipients=list(message.allowed),
            skipped=[Skipped(user_id=s.user_id, reason=s.reason) for s in message.skipped],
            warnings=list(message.warnings),
            settlement=None
            if message.settlement is None
            else SettlementView.model_validate(message.settlement.model_dump()),
        )

    @property
    def http_status(self) -> int:
        """200 once final; 202 while the outbox still owns it, or its outcome is unknown."""
        final = self.status in FINAL_STATUSES and self.status is not MessageStatus.UNKNOWN
        return 200 if final else 202


class StoredMessage(MessageView):
    """The GET answer: the message was found, so 200 whatever its status (202 is the POST's)."""

    @property
    def http_status(self) -> int:
        return 200
