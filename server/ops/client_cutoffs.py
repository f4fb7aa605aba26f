"""Requests cut short, by a client that went away or by our read deadline: counted, logged briefly.

A client that closes its connection before its request has been read gets no answer, because
nobody is left to receive one. So it is not an error answer: no code of docs/errors.md, nothing
in ``subgate_error_answers_total`` and, above all, no ``internal_error`` with a traceback (it is
not our fault, and a flood of hang-ups must not flood the log). It is counted in
``subgate_client_disconnects_total{route}``, by route template (a bounded set), and logged at most
once per route every ``LOG_INTERVAL_SECONDS`` through the refusals' own ``LogGate``.

A request whose headers or body did not arrive within ``server.read_timeout_seconds``
(server/web/connection_guard.py) is counted in ``subgate_read_timeouts_total{phase}`` and logged the
same way. A body cut off while its handler still reads it is also answered 408
``request_timeout``, and a connection turned away at ``server.max_connections`` is answered 503
``over_capacity``: those are answers, counted as error answers too.

Intake workers relay these counts to the primary with their refusals (``take_unrelayed``), so
the primary's ``/metrics`` shows every process's.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from server.ops.log_gate import LogGate
from storage.errors import StorageError

logger = logging.getLogger(__name__)

DISCONNECT = "disconnect"
READ_TIMEOUT = "read_timeout"
UNMATCHED_ROUTE = "-"
NOT_SENT_STATUS = 499  # what the access log shows for a request whose client left (nginx's code)
_FAMILIES = {
    DISCONNECT: (
        "subgate_client_disconnects",
        "Requests whose client closed the connection before the request was read, by route.",
        "route",
    ),
    READ_TIMEOUT: (
        "subgate_read_timeouts",
        "Requests cut off because their headers or body did not arrive within the read timeout.",
        "phase",
    ),
}

Key = tuple[str, str]  # (kind, label): (DISCONNECT, route template) or (READ_TIMEOUT, phase)


class Listener(Protocol):
    """What the collector reads of the listener this process serves on."""

    @property
    def open_connections(self) -> int: ...

    @property
    def max_connections(self) -> int: ...


class CutoffSink(Protocol):
    """Where an intake worker sends its counts: the relay to the primary."""

    async def add_client_cutoffs(self, counts: Mapping[Key, int]) -> None: ...


class ClientCutoffs(Collector):
    """The counts of one process (and, in the primary, those its workers relayed)."""

    def __init__(self) -> None:
        self._totals: Counter[Key] = Counter()
        self._unrelayed: Counter[Key] = Counter()
        self._log_gate = LogGate()
        self.listener: Listener | None = None

    def disconnected(self, route: str) -> None:
        since_last = self._count((DISCONNECT, route))
        if since_last:
            logger.info(
                "client closed the connection before its request was read: %s "
                "(%d since last report)",
                route,
                since_last,
            )

    def timed_out(self, phase: str, seconds: float) -> None:
        since_last = self._count((READ_TIMEOUT, phase))
        if since_last:
            logger.info(
                "cut off a request whose %s did not arrive within %s s (%d since last report)",
                phase,
                seconds,
                since_last,
            )

    def turned_away(self, max_connections: int) -> None:
        since_last = self._log_gate.due("over_capacity")
        if since_last:
            logger.warning(
                "turned away %d connection(s) since last report: server.max_connections (%d) "
                "are open",
                since_last,
                max_connections,
            )

    def _count(self, key: Key) -> int:
        self._totals[key] += 1
        self._unrelayed[key] += 1
        return self._log_gate.due(key)

    def totals(self) -> dict[Key, int]:
        return dict(self._totals)

    def add(self, counts: Mapping[Key, int]) -> None:
        """Take counts a worker made (and logged); keys of an unknown kind are dropped."""
        self._totals.update({key: n for key, n in counts.items() if key[0] in _FAMILIES})

    def take_unrelayed(self) -> dict[Key, int]:
        batch, self._unrelayed = dict(self._unrelayed), Counter()
        return batch

    def restore(self, batch: Mapping[Key, int]) -> None:
        self._unrelayed.update(batch)

    def collect(self) -> Iterator[Any]:
        for kind, (name, documentation, label) in _FAMILIES.items():
            family = CounterMetricFamily(name, documentation, labels=[label])
            for (of_kind, value), n in sorted(self._totals.items()):
                if of_kind == kind:
                    family.add_metric([value], n)
            yield family
        listener = self.listener
        if listener is not None:
            yield GaugeMetricFamily(
                "subgate_open_connections",
                "Connections open on this process's port.",
                value=listener.open_connections,
            )
            yield GaugeMetricFamily(
                "subgate_max_connections",
                "server.max_connections as applied: past it a connection is answered 503.",
                value=listener.max_connections,
            )


def client_went_away(request: web.BaseRequest, error: Exception) -> bool:
    """A connection error on a connection that is gone: the client left before it was answered.

    (An error of an outbound call while the client is still connected stays an internal error.)
    """
    return isinstance(error, ConnectionError) and request.transport is None


def departed(request: web.Request, cutoffs: ClientCutoffs | None) -> web.Response:
    """Count the departure; the response aiohttp will fail to send (and log as 499)."""
    if cutoffs is not None:
        resource = request.match_info.route.resource
        cutoffs.disconnected(UNMATCHED_ROUTE if resource is None else resource.canonical)
    return web.Response(status=NOT_SENT_STATUS)


async def relay_cutoffs(cutoffs: ClientCutoffs, sink: CutoffSink) -> None:
    """Send an intake worker's new counts to the primary; on failure keep them for the next."""
    batch = cutoffs.take_unrelayed()
    if not batch:
        return
    try:
        await sink.add_client_cutoffs(batch)
    except StorageError as error:
        cutoffs.restore(batch)
        logger.warning("client cut-off counts not relayed: %s", error)
