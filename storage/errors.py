"""Storage failures. The server maps these to HTTP answers; storage knows nothing of HTTP.

StorageError
└── StorageUnavailable   storage_unavailable   the write was not made durable; retry later
"""

from __future__ import annotations

from typing import ClassVar


class StorageError(Exception):
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
    code = "consent_required"


class IdempotencyMismatch(LedgerRefusal):
    code = "idempotency_conflict"
