"""Errors the server raises itself, and the one table that maps every error code to HTTP.

    RequestRefused                 (server-side refusals of a request)
    ├── UnknownApp                 unknown_app             403
    ├── AppMismatch                app_mismatch            403
    ├── PayloadTooLarge            too_large               413
    ├── UnsupportedMediaType       unsupported_media_type  415
    └── AppNotReady                app_not_ready           500  (configuration lacks a key)

``verify.errors`` and ``storage.errors`` codes are mapped here too; nothing else in the
code base decides an HTTP status for an error. docs/errors.md lists every code (checked by
tests/test_docs.py).
"""

from __future__ import annotations

from typing import ClassVar

from storage.errors import StorageError, StorageUnavailable
from verify.errors import (
    DecryptionFailed,
    EncryptionRequired,
    MalformedPayload,
    SignatureMismatch,
    StaleNotification,
    UnsupportedSignType,
    VerificationError,
)


class RequestRefused(Exception):
    code: ClassVar[str] = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownApp(RequestRefused):
    code = "unknown_app"


class AppMismatch(RequestRefused):
    code = "app_mismatch"


class PayloadTooLarge(RequestRefused):
    code = "too_large"


class UnsupportedMediaType(RequestRefused):
    code = "unsupported_media_type"


class AppNotReady(RequestRefused):
    code = "app_not_ready"


SubgateError = VerificationError | RequestRefused | StorageError
SUBGATE_ERRORS = (VerificationError, RequestRefused, StorageError)

STATUS_BY_CODE: dict[str, int] = {
    MalformedPayload.code: 400,
    UnsupportedSignType.code: 400,
    DecryptionFailed.code: 400,
    EncryptionRequired.code: 400,
    SignatureMismatch.code: 403,
    StaleNotification.code: 403,
    UnknownApp.code: 403,
    AppMismatch.code: 403,
    PayloadTooLarge.code: 413,
    UnsupportedMediaType.code: 415,
    AppNotReady.code: 500,
    StorageUnavailable.code: 503,
}


def status_for(error: SubgateError) -> int:
    return STATUS_BY_CODE.get(error.code, 500)


def error_message(error: SubgateError) -> str:
    return getattr(error, "message", None) or str(error) or error.code
