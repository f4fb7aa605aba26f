"""/console: where every app the token may see stands, at a glance.

Per app: notifications accepted and refused per minute over the last hour and per hour over the
last day (charts; each settled bucket counted once, ``tallies``), refusals by reason, messages
by channel and status (totals kept by triggers), the outbox's depth; then the destinations'
backlogs and failures, and the health checks /readyz makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from server.api.destination_views import DestinationView
from server.api.keys import DESK
from server.appkeys import STORE
from server.console.charts import Chart, slots, stacked_chart
from server.console.guard import console_page, render, visible_apps
from server.console.keys import CONSOLE, SESSION
from server.console.tallies import NotificationTallies
from server.ops.health import readiness
from server.ops.metrics import OUTBOX_STATUSES
from storage import Store

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class AppOverview:
    """One app's row of the overview."""

    app_id: str
    last_hour: Chart
    last_day: Chart
    refusals: list[tuple[str, int]]
    messages: list[tuple[str, str, int]]
    outbox_depth: int
    unknown: int


async def app_overview(
    store: Store, tallies: NotificationTallies, app_id: str, now: datetime
) -> AppOverview:
    """The charts and counts of one app at ``now``."""
    minutes, hours = slots(now, MINUTE, 60), slots(now, HOUR, 24)
    last_hour = stacked_chart(
        "Notifications per minute, last hour",
        minutes,
        await tallies.buckets(store, app_id, minutes[0], 60, now),
        await store.refusal_buckets(app_id, minutes[0], 60),
        "%H:%M",
    )
    last_day = stacked_chart(
        "Notifications per hour, last day",
        hours,
        await tallies.buckets(store, app_id, hours[0], 3600, now),
        await store.refusal_buckets(app_id, hours[0], 3600),
        "%H:00",
    )
    refusals = sorted(
        ((c.reason, c.count) for c in await store.refusal_counts() if c.app_id == app_id),
        key=lambda pair: -pair[1],
    )
    counts = await store.message_counts_of_app(app_id)
    messages = [(channel, status, n) for (channel, status), n in sorted(counts.items())]
    depth = sum(n for (_, status), n in counts.items() if status in OUTBOX_STATUSES)
    unknown = sum(n for (_, status), n in counts.items() if status == "unknown")
    return AppOverview(app_id, last_hour, last_day, refusals, messages, depth, unknown)


@console_page
async def overview(request: web.Request) -> web.StreamResponse:
    store, console = request.app[STORE], request.app[CONSOLE]
    now = console.clock()
    apps = [
        await app_overview(store, console.tallies, app_id, now) for app_id in visible_apps(request)
    ]
    desk = request.app.get(DESK)
    destinations: list[DestinationView] = []
    if desk is not None:
        destinations = (await desk.states(request[SESSION].grant)).destinations
    ready, checks = await readiness(request.app)
    context = {
        "overviews": apps,
        "destinations": destinations,
        "ready": ready,
        "checks": checks,
        "now": now,
    }
    return render(request, "overview.html", context)
