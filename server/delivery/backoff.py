"""When a failed delivery is tried again, and when it is given up.

Exponential backoff with *full jitter*: the n-th retry waits a uniformly drawn time between 0 and
``min(retry_max, retry_initial * 2**(n-1))``. Jitter matters most when a destination comes back
from an outage with many deliveries failing at once: drawn over the whole window they return
spread out instead of in waves. Full jitter rather than decorrelated jitter because it needs only
the attempt count, which the store keeps with each delivery; decorrelated jitter draws from the
previous wait, which nothing keeps (and a replica other than the one that drew it may retry).
The randomness is injected so that tests pin the draw.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.settings import DestinationSettings

# A draw in [0, 1): the share of the current ceiling a retry waits.
Draw = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """One destination's retry schedule."""

    initial_seconds: float
    max_seconds: float
    give_up_after_seconds: float
    draw: Draw = random.random

    @classmethod
    def of(cls, destination: DestinationSettings, draw: Draw = random.random) -> Backoff:
        """The schedule ``[[destinations]]`` configures."""
        return cls(
            destination.retry_initial_seconds,
            destination.retry_max_seconds,
            destination.give_up_after_seconds,
            draw,
        )

    def ceiling(self, attempts: int) -> float:
        """The longest wait after the ``attempts``-th failed attempt (1 for the first)."""
        doublings = min(max(attempts - 1, 0), 64)  # past 64 the cap has long been reached
        return min(self.max_seconds, self.initial_seconds * 2.0**doublings)

    def next_attempt(self, attempts: int, now: datetime) -> datetime:
        """When to try again after the ``attempts``-th failed attempt, failed at ``now``."""
        return now + timedelta(seconds=self.draw() * self.ceiling(attempts))

    def is_dead(self, retry_since: datetime, now: datetime) -> bool:
        """Whether a delivery failing since ``retry_since`` is given up at ``now``."""
        return (now - retry_since).total_seconds() >= self.give_up_after_seconds
