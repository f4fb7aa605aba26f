"""One connection's read deadline: a time by which something must have arrived, else ``on_late``.

Requests on a keep-alive connection come thousands of times a second, so a request only moves
the deadline (one float) and never makes a timer: the connection's one timer, when it fires
before the deadline then current, sets itself again for it. A connection thus makes a timer per
timeout period, not per request. Used by ``server/web/connection_guard.py`` (connections served
by aiohttp) and ``server/web/lane_connection.py`` (connections served on the lane).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# A timer may run a little before its time (the loop's clock resolution): that close is on time.
DEADLINE_SLACK_SECONDS = 0.001


class ReadDeadline:
    """``start`` arms it ``seconds`` from now, ``stop`` disarms it, ``cancel`` ends it for good."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_late: Callable[[], None]) -> None:
        self._loop = loop
        self._on_late = on_late
        self._deadline: float | None = None  # loop time by which the current phase must end
        self._timer: asyncio.TimerHandle | None = None  # set for the deadline or before it
        self._timer_at = 0.0

    @property
    def armed(self) -> bool:
        return self._deadline is not None

    def start(self, seconds: float) -> None:
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is not None and self._timer_at > deadline:  # a shorter period than before
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._set_timer(deadline)

    def stop(self) -> None:
        self._deadline = None

    def cancel(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_timer(self, at: float) -> None:
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() + DEADLINE_SLACK_SECONDS < self._deadline:
            self._set_timer(self._deadline)
            return
        self._deadline = None
        self._on_late()
