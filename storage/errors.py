"""Storage failures. The server maps these to HTTP answers; storage knows nothing of HTTP.

StorageError
└── StorageUnavailable   storage_unavailable   the write was not made durable; retry later
LedgerRefusal                                  the ledger refused; nothing was written
├── ConsentRequired      consent_required
├── IdempotencyMismatch  idempotency_conflict
├── WeeklyLimitReached   weekly_limit          a send limit per rolling window; ``retry_at``
└── MessageNotUnknown    message_not_unknown   a settle of a message that is not ``unknown``
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


class StorageError(Exception):
    """Any failure of the store itself (never a refusal of the ledger): the server answers 503."""

    code: ClassVar[str] = "storage_error"


class StorageUnavailable(StorageError):
    """Nothing of the failed operation was committed; the caller may retry it as a whole."""

    code = "storage_unavailable"


class LedgerRefusal(Exception):
    """The ledger refused a change; nothing of it was written."""

    code: ClassVar[str] = "ledger_refusal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConsentRequired(LedgerRefusal):
    """The ledger holds no consent for the send: nothing was reserved or spent."""

    code = "consent_required"


class IdempotencyMismatch(LedgerRefusal):
    """The idempotency key was used with another request: a retry must repeat the first."""

    code = "idempotency_conflict"


class WeeklyLimitReached(LedgerRefusal):
    """The app's sends on a channel in the rolling window are used up; nothing was written.

    ``retry_at`` is when the oldest counted send leaves the window, so the next one is allowed;
    ``refused_at`` the time of the refused send.
    """

    code = "weekly_limit"

    def __init__(self, message: str, retry_at: datetime, refused_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.refused_at = refused_at


class MessageNotUnknown(LedgerRefusal):
    """Only a message whose outcome is ``unknown`` can be settled, once: nothing was written."""

    code = "message_not_unknown"
