"""Reading a console page's query string: filters, times and keyset cursors.

A value that cannot be read is refused with ``invalid_parameter`` (a page saying which), never
silently dropped: an operator must not take an unfiltered list for a filtered one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from server.consent.views import USER_ID_PATTERN
from server.errors import InvalidParameter, ValidationFailed
from storage.timecodec import to_millis

PAGE_SIZE = 50
_CURSOR = re.compile(r"([0-9]{1,15})~(.{1,128})")
_IDENTIFIER = re.compile(USER_ID_PATTERN)


def text(request: web.Request, name: str, limit: int = 128) -> str | None:
    """A filter's text, or None when absent or blank."""
    value = request.query.get(name, "").strip()
    if len(value) > limit:
        raise InvalidParameter(f"{name} is longer than {limit} characters")
    return value or None


def utc_minute(request: web.Request, name: str) -> int | None:
    """A ``datetime-local`` value (read as UTC) as epoch milliseconds, or None."""
    value = text(request, name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameter(f"{name} must be a time like 2026-11-23T08:00 (UTC)") from None
    return to_millis(moment)


def cursor(request: web.Request) -> tuple[int, str] | None:
    """The ``before`` cursor: the time in epoch milliseconds and the id of the last row seen."""
    value = text(request, "before", 160)
    if value is None:
        return None
    match = _CURSOR.fullmatch(value)
    if match is None:
        raise InvalidParameter("before must be a cursor from a page's 'Older' link")
    return int(match.group(1)), match.group(2)


def cursor_of(at: datetime, row_id: object) -> str:
    """The ``before`` value that continues after a row."""
    return f"{to_millis(at)}~{row_id}"


def user_id(value: str) -> str:
    """A user id as the ledger keeps them (1-64 letters, digits, ``_`` or ``-``)."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValidationFailed("a user id is 1-64 letters, digits, '_' or '-'")
    return value
