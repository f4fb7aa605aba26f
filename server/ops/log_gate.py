"""Rate-limited log lines: at most one line per key and interval, with the count since the last."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable

LOG_INTERVAL_SECONDS = 10.0


class LogGate:
    """At most one log line per key every ``LOG_INTERVAL_SECONDS``: what keeps a flood of anything
    a client can repeat (refusals, hang-ups, slow requests) from flooding the log."""

    def __init__(self) -> None:
        self._logged_at: dict[Hashable, float] = {}
        self._since_log: Counter[Hashable] = Counter()

    def due(self, key: Hashable) -> int:
        """Note one event of ``key``: the events since its last line when a line is due, else 0."""
        self._since_log[key] += 1
        now = time.monotonic()
        if now - self._logged_at.get(key, -LOG_INTERVAL_SECONDS) < LOG_INTERVAL_SECONDS:
            return 0
        self._logged_at[key] = now
        return self._since_log.pop(key)
