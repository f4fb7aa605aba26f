"""Charts drawn on the server as SVG geometry: the templates only place the rectangles.

A chart has one slot per time bucket, even an empty one, so a quiet minute shows as a gap and
the time axis stays regular. Each slot stacks refused on top of accepted. Colours come from the
console's stylesheet (classes, no inline style), so the page keeps its strict CSP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import TimeBucket

WIDTH = 600
HEIGHT = 140
AXIS = 34  # room on the left for the counts
BASE = HEIGHT - 18  # the time axis; labels below it


@dataclass(frozen=True, slots=True)
class Bar:
    """One slot: its accepted part at the bottom, refused on top, and what hovering says."""

    x: float
    width: float
    accepted_y: float
    accepted_height: float
    refused_y: float
    refused_height: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the template draws: bars, a few time labels, the top of the scale."""

    title: str
    summary: str
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]
    top: int
    width: int = WIDTH
    height: int = HEIGHT
    axis: int = AXIS
    base: int = BASE


def slots(end: datetime, width: timedelta, count: int) -> list[datetime]:
    """The starts of ``count`` buckets of ``width``, the last one holding ``end``."""
    last = datetime.fromtimestamp(
        end.timestamp() // width.total_seconds() * width.total_seconds(), end.tzinfo
    )
    return [last - width * (count - 1 - index) for index in range(count)]


def stacked_chart(
    title: str,
    starts: Sequence[datetime],
    accepted: Sequence[TimeBucket],
    refused: Sequence[TimeBucket],
    label_format: str,
) -> Chart:
    """A bar per start; every ``len(starts) // 6``-th start labelled in ``label_format``."""
    ok = {bucket.start: bucket.count for bucket in accepted}
    bad = {bucket.start: bucket.count for bucket in refused}
    top = _scale_top(max((ok.get(s, 0) + bad.get(s, 0) for s in starts), default=0))
    step = (WIDTH - AXIS) / max(len(starts), 1)
    bars = tuple(
        _bar(AXIS + index * step, step, ok.get(start, 0), bad.get(start, 0), top, start)
        for index, start in enumerate(starts)
    )
    every = max(len(starts) // 6, 1)
    labels = tuple(
        (AXIS + index * step, start.strftime(label_format))
        for index, start in enumerate(starts)
        if index % every == 0
    )
    summary = f"{sum(ok.values())} accepted, {sum(bad.values())} refused"
    return Chart(title, summary, bars, labels, top)


def _bar(x: float, step: float, accepted: int, refused: int, top: int, start: datetime) -> Bar:
    room = BASE - 6
    accepted_height = room * accepted / top
    refused_height = room * refused / top
    title = f"{start:%Y-%m-%d %H:%M} UTC: {accepted} accepted, {refused} refused"
    return Bar(
        x=round(x + step * 0.1, 2),
        width=round(step * 0.8, 2),
        accepted_y=round(BASE - accepted_height, 2),
        accepted_height=round(accepted_height, 2),
        refused_y=round(BASE - accepted_height - refused_height, 2),
        refused_height=round(refused_height, 2),
        title=title,
    )


def _scale_top(highest: int) -> int:
    """A round number at or above ``highest`` (at least 1), for the scale's top."""
    top = 1
    while top < highest:
        for factor in (2, 5, 10):
            if top * factor >= highest:
                return top * factor
        top *= 10
    return top
