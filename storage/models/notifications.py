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
    charset: str  # the one the body was decoded in when it was verified
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
    """A notification as kept, with the id the store gave it."""

    id: int


class RecordOutcome(Frozen):
    """The id a notification is stored under, and whether it was stored before."""

    notification_id: int
    duplicate: bool


class RefusalCount(Frozen):
    """How many requests of an app were refused for one reason, and when the last was."""

    app_id: str
    reason: str
    count: int
    last_at: Instant
