"""Times are stored as integer epoch milliseconds (sortable, compact, same in every backend)."""

from __future__ import annotations

from datetime import UTC, datetime


def to_millis(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def optional_millis(value: datetime | None) -> int | None:
    return None if value is None else to_millis(value)


def optional_datetime(value: int | None) -> datetime | None:
    return None if value is None else from_millis(value)
