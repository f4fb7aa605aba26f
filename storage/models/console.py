"""What the operator console asks the store: a page of notifications or messages, newest first,
from a keyset cursor, and counts in time buckets for its charts."""

from __future__ import annotations

from dataclasses import dataclass

from storage.models.frozen import Frozen, Instant

NO_ID_ABOVE = 2**62  # above every id a notification can have: a first page starts under it


@dataclass(frozen=True, slots=True)
class NotificationQuery:
    """One page of an app's notifications, newest first.

    ``before`` is the (received time in epoch milliseconds, id) of the last row of the previous
    page: the page holds rows strictly older in that order. ``notify_id_text`` keeps notifications
    whose notify id contains the text; ``kind`` those of one kind; ``since`` and ``until``
    (epoch milliseconds, inclusive) bound the received time. ``down_to`` (a received time and
    id) ends the page there, that row included: a text search reads no further than the bound
    ``notifications_scan_end`` found.
    """

    limit: int
    kind: str | None = None
    notify_id_text: str = ""
    since: int = 0
    until: int = NO_ID_ABOVE
    before: tuple[int, int] | None = None
    down_to: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """One page of an app's messages, newest first; ``before`` is the (created time in epoch
    milliseconds, message id) of the last row of the previous page."""

    limit: int
    status: str | None = None
    channel: str | None = None
    before: tuple[int, str] | None = None


class TimeBucket(Frozen):
    """How many things happened in the bucket that starts at ``start``."""

    start: Instant
    count: int


class MessageAttempt(Frozen):
    """One attempt of a message (``0009_message_attempts.sql``): when it began and ended, the
    status it left the message in (``sent``, ``queued`` to be retried, ``failed``, ``unknown``),
    the platform's answer and the error. Times are None for an attempt recorded from its
    message's row when the table was made."""

    number: int
    started_at: Instant | None
    finished_at: Instant | None
    status: str
    platform_code: str | None
    platform_msg: str | None
    sub_code: str | None
    sub_msg: str | None
    error: str | None
