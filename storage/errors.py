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
