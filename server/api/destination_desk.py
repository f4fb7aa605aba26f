"""The operator's side of the push: each destination's state, its deliveries, and replays.

Destinations come from the settings file only; nothing here creates or changes one. A token for
some apps only sees the destinations that carry none but its apps (a destination without
``apps`` carries every configured app): there every delivery is one of its apps, so no answer
shows it another app's event, and a replay cannot push another app's events. A destination it
may not see is refused (403), and left out of the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from server.api.auth import Grant
from server.api.destination_views import (
    DeliveryPage,
    DestinationList,
    ReplayAnswer,
    delivery_view,
    destination_view,
)
from server.delivery.filters import destination_filter
from server.errors import DeliveryNotFound, DestinationNotFound, Forbidden
from server.events.payloads import parse_event_id
from server.runtime.clock import Clock
from server.settings import DestinationSettings
from storage import Store

Wake = Callable[[str], None]  # have a destination look for due deliveries now


def _no_wake(name: str) -> None:
    """Without running destinations, a replayed delivery waits for their next start."""


class DeliveryDesk:
    """Reads and replays the deliveries of the configured destinations, for one grant."""

    def __init__(
        self,
        store: Store,
        destinations: Sequence[DestinationSettings],
        app_ids: Sequence[str],
        clock: Clock,
        wake: Wake = _no_wake,
    ) -> None:
        self._store = store
        self._destinations = {destination.name: destination for destination in destinations}
        self._app_ids = tuple(app_ids)
        self._clock = clock
        self._wake = wake

    def visible_to(self, grant: Grant, destination: DestinationSettings) -> bool:
        """May this grant see (and replay) the destination? Only if it covers every app the
        destination carries."""
        return grant.covers(destination.apps or self._app_ids)

    def destination(self, name: str, grant: Grant) -> DestinationSettings:
        """The configured destination of this name, when the grant may see it."""
        destination = self._destinations.get(name)
        if destination is None:
            raise DestinationNotFound("no [[destinations]] entry has this name")
        if not self.visible_to(grant, destination):
            raise Forbidden("this token may not act for every app this destination carries")
        return destination

    async def states(self, grant: Grant) -> DestinationList:
        """Every destination the grant may see, in the settings' order, with its state."""
        backlogs = {b.destination: b for b in await self._store.destination_backlogs()}
        now = self._clock()
        return DestinationList(
            destinations=[
                destination_view(destination, backlogs.get(destination.name), now)
                for destination in self._destinations.values()
                if self.visible_to(grant, destination)
            ]
        )

    async def deliveries(
        self, name: str, grant: Grant, status: str, limit: int, before: int | None
    ) -> DeliveryPage:
        """A page of the destination's deliveries in one state, newest first."""
        self.destination(name, grant)
        histories = await self._store.delivery_histories(name, status, limit, before)
        views = [delivery_view(history) for history in histories]
        more = len(views) == limit
        return DeliveryPage(deliveries=views, next_before=views[-1].id if more else None)

    async def replay_one(self, name: str, grant: Grant, event_id: str) -> ReplayAnswer:
        """Make the destination's delivery of one event due now, its give-up time afresh."""
        self.destination(name, grant)
        number = parse_event_id(event_id)
        if number is None or not await self._store.replay_delivery(name, number, self._clock()):
            raise DeliveryNotFound("this destination never had this event")
        self._wake(name)
        return ReplayAnswer(destination=name, replayed=1)

    async def replay_since(self, name: str, grant: Grant, since: datetime) -> ReplayAnswer:
        """Replay every event the destination takes written since ``since``."""
        wants = destination_filter(self.destination(name, grant))
        count = await self._store.replay_since(name, since, wants, self._clock())
        if count:
            self._wake(name)
        return ReplayAnswer(destination=name, replayed=count)
