"""The overview's notification counts per minute and per hour, each bucket counted once.

Counting a day of notifications per hour reads a day of index entries, on every load of the
overview: a cost that grows with the app's traffic. But a bucket that ended a while ago no longer
changes (a notification's received time is the clock of the process that stored it, never
older than a few seconds by the time it commits), so each app's settled buckets are kept here
once counted, and a load of the overview counts only what arrived since the last settled
bucket: the last minute or two, the last hour or two. Nothing is written on intake's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from storage import Store
from storage.models import TimeBucket
from storage.timecodec import from_millis, to_millis

# How long after its end a bucket is taken as settled: far above the time between a
# notification's received time and its commit.
SETTLE = timedelta(minutes=1)


@dataclass(slots=True)
class _Settled:
    """One app's settled buckets of one width: counts by start (epoch ms) of every bucket in
    [``since``, ``until``) that held any (the others held none)."""

    since: int
    until: int
    counts: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class NotificationTallies:
    """Settled bucket counts per (app, width), held for the process's life (a few thousand
    numbers at most: buckets older than the charts ask for are dropped)."""

    _settled: dict[tuple[str, int], _Settled] = field(default_factory=dict)

    async def buckets(
        self, store: Store, app_id: str, since: datetime, width_seconds: int, now: datetime
    ) -> list[TimeBucket]:
        """What ``Store.notification_buckets`` answers for ``since`` (a bucket's start), read
        from the store only from the first bucket not yet settled."""
        width, start = width_seconds * 1000, to_millis(since)
        known = self._known(app_id, width, start)
        fresh = await store.notification_buckets(app_id, from_millis(known.until), width_seconds)
        boundary = to_millis(now - SETTLE) // width * width  # buckets before it are settled
        for bucket in fresh:
            at = to_millis(bucket.start)
            if at < boundary:
                known.counts[at] = bucket.count
        known.until = max(known.until, boundary)
        settled = [TimeBucket(start=from_millis(at), count=n) for at, n in known.counts.items()]
        live = [bucket for bucket in fresh if to_millis(bucket.start) >= known.until]
        return sorted(settled, key=lambda bucket: bucket.start) + live

    def _known(self, app_id: str, width: int, start: int) -> _Settled:
        """The settled counts from ``start`` on, older ones dropped; afresh when they do not
        reach back to ``start`` or leave a gap after it."""
        known = self._settled.get((app_id, width))
        if known is None or known.since > start or known.until < start:
            known = self._settled[(app_id, width)] = _Settled(start, start)
        known.counts = {at: n for at, n in known.counts.items() if at >= start}
        known.since = start
        return known
