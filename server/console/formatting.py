"""How the console's templates write times, durations and decoded content."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup


def when(value: datetime | None) -> Markup:
    """A time as a ``<time>`` element in UTC to the second ("—" for none)."""
    if value is None:
        return Markup("—")
    moment = value.astimezone(UTC)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S")
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), shown)


def seconds(value: float) -> str:
    """A duration as an operator reads it: 45 s, 12 min, 3.5 h, 2.0 d."""
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.0f} min"
    if value < 172_800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def pretty(value: Any) -> str:
    """Decoded content as indented JSON, Chinese text as it is (a string stays as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


FILTERS = {"when": when, "seconds": seconds, "pretty": pretty}
