"""Verified notifications as kept, and the counters of refused ones."""

from __future__ import annotations

from storage.models.frozen import Frozen, Instant
from storage.models.stored_form import stored_form_fields


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
        return stored_form_fields(self.raw_body, self.charset)


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
