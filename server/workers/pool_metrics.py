"""What ``/metrics`` shows of a pool of worker processes, the same four families for every kind:
workers serving now, the work by where it was done (a worker, or the service itself when none
served), the work lost with a worker, and restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class WorkerCounts(NamedTuple):
    """A pool's counts at one moment."""

    serving: int
    in_worker: int  # work handed to a worker
    in_service: int  # work done in the service: no worker serving, or one refused it
    lost: int  # work that ended with its worker (died, or did not answer in time)
    restarts: int


@dataclass(frozen=True)
class WorkerMetricNames:
    """The names and help texts one kind of worker shows its counts under."""

    serving: str
    serving_help: str
    work: str
    work_help: str
    lost: str
    lost_help: str
    restarts: str
    restarts_help: str


class WorkerPoolMetrics(Collector):
    """Collects one pool's counts under its kind's names (registered when the pool starts)."""

    def __init__(self, names: WorkerMetricNames, counts: Callable[[], WorkerCounts]) -> None:
        self._names = names
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        names, counts = self._names, self._counts()
        serving = GaugeMetricFamily(names.serving, names.serving_help)
        serving.add_metric([], counts.serving)
        work = CounterMetricFamily(names.work, names.work_help, labels=["made_in"])
        work.add_metric(["worker"], counts.in_worker)
        work.add_metric(["service"], counts.in_service)
        lost = CounterMetricFamily(names.lost, names.lost_help)
        lost.add_metric([], counts.lost)
        restarts = CounterMetricFamily(names.restarts, names.restarts_help)
        restarts.add_metric([], counts.restarts)
        yield from (serving, work, lost, restarts)
