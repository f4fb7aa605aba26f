"""Times are stored as integer epoch milliseconds (sortable, compact, same in every backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_millis(value: datetime) -> int:
    """An aware time as the stores keep it."""
    return round(value.timestamp() * 1000)


def from_millis(value: int) -> datetime:
    """A stored time back as an aware UTC datetime.

    Exact integer arithmetic from the epoch, with no float and no time-zone lookup: a push reads
    several times per event back on the event loop, and this is the cheaper call."""
    seconds, millis = divmod(value, 1000)
    return _EPOCH + timedelta(0, seconds, millis * 1000)


def optional_millis(value: datetime | None) -> int | None:
    """``to_millis`` of a time that may be absent (NULL)."""
    return None if value is None else to_millis(value)


def optional_datetime(value: int | None) -> datetime | None:
    """``from_millis`` of a stored time that may be NULL."""
    return None if value is None else from_millis(value)
