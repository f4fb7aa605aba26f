"""The service's one clock: an aware UTC ``datetime``, passed to every part that reads time.

Parts take a ``Clock`` rather than calling ``datetime.now`` so that tests can move time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
