"""Errors the server raises itself, and the one table that maps every error code to HTTP.

    RequestRefused                 (server-side refusals of a request)
    ├── UnknownApp                 unknown_app             403
    ├── AppMismatch                app_mismatch            403
    ├── PayloadTooLarge            too_large               413
    ├── UnsupportedMediaType       unsupported_media_type  415
    ├── AppNotReady                app_not_ready           500  (configuration lacks a key)
    ├── Unauthorized               unauthorized            401  /v1: no or unknown bearer token
    ├── Forbidden                  forbidden               403  /v1: token lacks the app or scope
    ├── NotFound                   not_found               404
    ├── AppNotFound                app_not_found           404  /v1: the app is not configured
    ├── MethodNotAllowed           method_not_allowed      405
    ├── InvalidJson                invalid_json            400
    ├── ValidationFailed           validation_failed       422
    ├── IdempotencyKeyRequired     idempotency_key_required 400
    ├── IdempotencyConflict        idempotency_conflict    409  same key, different body
    ├── InvalidReport              invalid_report          422  a contradictory subscribe result
    ├── ChannelNotOptIn            channel_not_opt_in      422
    ├── UnknownChannel             unknown_channel         422
    ├── TemplateNotRegistered      template_not_registered 422
    ├── TemplateDataMismatch       template_data_mismatch  422
    ├── KeywordTooLong             keyword_too_long        422
    ├── UnknownTopApp              unknown_top_app         422  a TOP send names no [[top_apps]]
    ├── PlatformUnavailable        platform_unavailable    503  a pre-send platform check failed
    ├── RequestTimeout             request_timeout         408  the body did not arrive in time
    ├── MalformedRequest           malformed_request       400  not HTTP/1.1 (on the lane)
    ├── InvalidCursor              invalid_cursor          400  /v1 feed: not a cursor we gave out
    ├── UnknownEventType           unknown_event_type      400  /v1 feed: a glob matches no type
    ├── InvalidParameter           invalid_parameter       400  /v1: a query value out of range
    ├── DestinationNotFound        destination_not_found   404  /v1: no such [[destinations]]
    ├── DeliveryNotFound           delivery_not_found      404  /v1: the destination never had it
    ├── MessageNotFound            message_not_found       404  /v1 settle: no such message
    ├── OverCapacity               over_capacity           503  past server.max_connections
    └── CsrfRefused                csrf_refused            403  /console: a POST without its token
    storage.errors.ConsentRequired consent_required        403
    storage.errors.WeeklyLimitReached weekly_limit         429  adds ``retry_at`` to the body
    storage.errors.MessageNotUnknown message_not_unknown   409  a settle of a message not unknown

``verify.errors`` and ``storage.errors`` codes are mapped here too; nothing else in the
code base decides an HTTP status for an error. docs/errors.md lists every code (checked by
tests/test_docs.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import ClassVar

from storage.errors import (
    ConsentRequired,
    LedgerRefusal,
    MessageNotUnknown,
    StorageError,
    StorageUnavailable,
    WeeklyLimitReached,
)
from verify.errors import (
    DecryptionFailed,
    EncryptionRequired,
    MalformedPayload,
    SignatureMismatch,
    StaleNotification,
    UnsupportedSignType,
    VerificationError,
)

INTERNAL_ERROR = "internal_error"


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


class Unauthorized(RequestRefused):
    code = "unauthorized"


class Forbidden(RequestRefused):
    code = "forbidden"


class NotFound(RequestRefused):
    code = "not_found"


class AppNotFound(RequestRefused):
    code = "app_not_found"


class MethodNotAllowed(RequestRefused):
    code = "method_not_allowed"


class InvalidJson(RequestRefused):
    code = "invalid_json"


class ValidationFailed(RequestRefused):
    code = "validation_failed"


class IdempotencyKeyRequired(RequestRefused):
    code = "idempotency_key_required"


class IdempotencyConflict(RequestRefused):
    code = "idempotency_conflict"


class InvalidReport(RequestRefused):
    code = "invalid_report"


class ChannelNotOptIn(RequestRefused):
    code = "channel_not_opt_in"


class UnknownChannel(RequestRefused):
    code = "unknown_channel"


class TemplateNotRegistered(RequestRefused):
    code = "template_not_registered"


class TemplateDataMismatch(RequestRefused):
    code = "template_data_mismatch"


class KeywordTooLong(RequestRefused):
    code = "keyword_too_long"


class UnknownTopApp(RequestRefused):
    code = "unknown_top_app"


class PlatformUnavailable(RequestRefused):
    code = "platform_unavailable"


class RequestTimeout(RequestRefused):
    code = "request_timeout"


class MalformedRequest(RequestRefused):
    code = "malformed_request"


class OverCapacity(RequestRefused):
    code = "over_capacity"


class InvalidCursor(RequestRefused):
    code = "invalid_cursor"


class UnknownEventType(RequestRefused):
    code = "unknown_event_type"


class InvalidParameter(RequestRefused):
    code = "invalid_parameter"


class DestinationNotFound(RequestRefused):
    code = "destination_not_found"


class DeliveryNotFound(RequestRefused):
    code = "delivery_not_found"


class MessageNotFound(RequestRefused):
    code = "message_not_found"


class CsrfRefused(RequestRefused):
    code = "csrf_refused"


SubgateError = VerificationError | RequestRefused | StorageError | LedgerRefusal
SUBGATE_ERRORS = (VerificationError, RequestRefused, StorageError, LedgerRefusal)

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
    Unauthorized.code: 401,
    Forbidden.code: 403,
    NotFound.code: 404,
    AppNotFound.code: 404,
    MethodNotAllowed.code: 405,
    InvalidJson.code: 400,
    ValidationFailed.code: 422,
    IdempotencyKeyRequired.code: 400,
    IdempotencyConflict.code: 409,
    InvalidReport.code: 422,
    ChannelNotOptIn.code: 422,
    UnknownChannel.code: 422,
    TemplateNotRegistered.code: 422,
    TemplateDataMismatch.code: 422,
    KeywordTooLong.code: 422,
    UnknownTopApp.code: 422,
    PlatformUnavailable.code: 503,
    RequestTimeout.code: 408,
    MalformedRequest.code: 400,
    OverCapacity.code: 503,
    InvalidCursor.code: 400,
    UnknownEventType.code: 400,
    InvalidParameter.code: 400,
    DestinationNotFound.code: 404,
    DeliveryNotFound.code: 404,
    MessageNotFound.code: 404,
    CsrfRefused.code: 403,
    ConsentRequired.code: 403,
    WeeklyLimitReached.code: 429,
    MessageNotUnknown.code: 409,
    StorageUnavailable.code: 503,
    INTERNAL_ERROR: 500,
}


def status_for(error: SubgateError) -> int:
    return STATUS_BY_CODE.get(error.code, 500)


def error_message(error: SubgateError) -> str:
    return getattr(error, "message", None) or str(error) or error.code


def error_details(error: SubgateError) -> dict[str, str]:
    """Keys an error adds inside ``error``: ``retry_at`` (RFC 3339, UTC) for ``weekly_limit``."""
    if isinstance(error, WeeklyLimitReached):
        return {"retry_at": rfc3339(error.retry_at)}
    return {}


def retry_after_seconds(error: SubgateError) -> int | None:
    """The ``Retry-After`` of a refusal that names a time (whole seconds, at least 1)."""
    if isinstance(error, WeeklyLimitReached):
        return max(1, math.ceil((error.retry_at - error.refused_at).total_seconds()))
    return None


def rfc3339(value: datetime) -> str:
    """As the API writes every time (pydantic's way): UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def error_body(
    code: str, message: str, details: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """The one error shape of every /v1 answer: ``{"error": {"code": ..., "message": ...}}``.

    Callers may add keys inside ``error`` (e.g. ``retry_at``) but never remove these two.
    """
    return {"error": {**(details or {}), "code": code, "message": message}}
