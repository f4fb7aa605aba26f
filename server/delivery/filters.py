"""Which events a destination takes: its ``apps``, ``events`` and ``kinds`` of ``[[destinations]]``.

The filter is what ``Store.fan_out`` calls on each event it reads, so it must be pure and cheap
(a backend may call it on its writer thread, or again when a transaction is retried). ``kinds``
looks only at events that have a kind (a notification's): a consent or message event has none,
and a destination asking for certain notification kinds still takes them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from server.settings import DestinationSettings
from storage.base import EventFilter
from storage.models import EventHead


def _any_glob(globs: Sequence[str] | None) -> re.Pattern[str] | None:
    """One compiled pattern for a list of globs; None when the list leaves everything in."""
    if globs is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


def destination_filter(destination: DestinationSettings) -> EventFilter:
    """The ``EventFilter`` of one destination's settings."""
    apps = None if destination.apps is None else frozenset(destination.apps)
    types = _any_glob(destination.events)
    kinds = _any_glob(destination.kinds)

    def wants(head: EventHead) -> bool:
        if apps is not None and head.app_id not in apps:
            return False
        if types is not None and types.match(head.type) is None:
            return False
        return kinds is None or head.kind is None or kinds.match(head.kind) is not None

    return wants
