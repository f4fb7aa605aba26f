"""One destination's loop: keep the last batch's verdicts, read new events into deliveries,
claim a batch, hand it over, repeat.

Each pass is one ``Store.advance_deliveries``, one transaction: the verdicts of the batches whose
posts have all been answered since the last pass are kept, the destination's cursor moves past
new events (a pending delivery is made of each one it takes), and due deliveries are leased to
this process (per-user order kept by the store) as the next batch, which the ``Courier`` posts.
Up to ``BATCHES_IN_FLIGHT`` batches are posted at once, sharing the destination's
``concurrency``: while one batch's answers are awaited, the next is already being posted. A
user's next event waits for the pass that keeps the verdict before it: the store keeps per-user
order.

With nothing to do the loop sleeps until it is woken: by the event watch (an event was written),
by a batch finishing (its verdicts are to be kept), by ``wake()`` (a replay), or at the latest
after ``poll_seconds`` (events of other replicas, retries coming due). It never spins.

A batch's lease outlasts every post it may start (``BATCHES_IN_FLIGHT`` timeouts, plus a margin
for the commit and for clocks that differ between replicas); a process that dies leaves leases
that run out and are claimed again, so every event is delivered at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from server.delivery.batch import Courier
from server.delivery.filters import destination_filter
from server.events.watch import EventWatch
from server.runtime.clock import Clock
from server.settings import DestinationSettings
from storage import Store
from storage.errors import StorageError
from storage.models import ClaimedDelivery, DeliveryResult, DeliveryRound, EventPosition

logger = logging.getLogger(__name__)

FAN_OUT_LIMIT = 500  # events read per fan-out; a full read is followed by another at once
# While intake is quiet, three: a pass (keep, fan out, claim) waits for the writer and for the
# loop's share of the GIL, and may take longer than the one batch after it takes to post; with
# two waiting behind the one being answered, the slots do not run dry while it runs. While
# intake has commits waiting, two (SHARED_BATCHES): each pass is a writer job that intake's
# commits wait behind, so passes are not run ahead of the posts (bench/README.md).
BATCHES_IN_FLIGHT = 3
SHARED_BATCHES = 2
# A batch holds this many posts per slot of the destination's concurrency: its claim and its
# commit of verdicts are shared by them all, instead of bounding the pace at one post per slot
# per commit.
ROUNDS_PER_BATCH = 8
# Intake first. A pass is one writer job, and a notification's commit waits behind it, so the
# job's size is set by how busy intake is:
# - while notifications wait for their commit (SHARED_IN_FLIGHT or more), a pass reads and claims
#   little (SHARED_ROUNDS posts per slot): its job stays short, and intake's commits are not held
#   up by a batch sized for an idle process (a full batch at half of capacity pushed intake into
#   the trickle below, on a slower machine: bench/README.md);
# - while at least BUSY_IN_FLIGHT wait, and still do a moment later, the process is full of work
#   that cannot wait (acknowledging Alipay). A pass then waits BUSY_PAUSE_SECONDS and goes on at
#   a trickle (BUSY_PACE: a few events fanned out, one posted), so that events keep moving
#   without taking the loop; the backlog (kept, visible in /metrics) drains at full pace once
#   intake calms.
SHARED_IN_FLIGHT = 4
SHARED_ROUNDS = 2
SHARED_FAN_OUT = 100
BUSY_IN_FLIGHT = 32
BUSY_CHECK_SECONDS = 0.02  # busy only if still so this much later: a spike is not a burst
BUSY_PAUSE_SECONDS = 0.25
# With push workers ([delivery] processes) a push costs this loop a fraction of what posting it
# here does: short passes (SHARED_*) then only bounded the push rate by the writer's round trip
# (each pass waits behind intake's commits, bench/README.md), so passes are whole unless busy.
# Busy is then also told from a burst by looking BUSY_LOOKS times: commits waiting for a slow
# disk come and go with each group commit, while a full process keeps them waiting throughout.
BUSY_LOOKS = 5
LEASE_MARGIN_SECONDS = 10.0


class Pace(NamedTuple):
    """How much one pass takes on: events read by its fan-out, deliveries in its claim, and
    the batches that may be out before it runs."""

    fan_out: int
    claim: int
    batches: int = SHARED_BATCHES


BUSY_PACE = Pace(fan_out=100, claim=1)


@dataclass(frozen=True)
class Step:
    """What one pass did: events read by the fan-out, and the verdicts of its batch."""

    read: int
    results: tuple[DeliveryResult, ...]


class DestinationWorker:
    """Pushes the events one destination takes; one per destination and process."""

    def __init__(
        self,
        settings: DestinationSettings,
        courier: Courier,
        store: Store,
        clock: Clock,
        owner: str,
        watch: EventWatch | None = None,
        intake_in_flight: Callable[[], int] = lambda: 0,
        posts_elsewhere: bool = False,
    ) -> None:
        self.settings = settings
        self._posts_elsewhere = posts_elsewhere  # its courier hands batches to push workers
        self.name = settings.name
        self.courier = courier
        self._store = store
        self._clock = clock
        self.owner = owner
        self._watch = watch
        self.wants = destination_filter(settings)  # also what a replay of a window takes
        self.batch_size = settings.concurrency * ROUNDS_PER_BATCH
        rounds = BATCHES_IN_FLIGHT * ROUNDS_PER_BATCH  # the most posts one slot may make in turn
        self.lease_seconds = rounds * settings.timeout_seconds + LEASE_MARGIN_SECONDS
        self._woken = asyncio.Event()
        self._intake_in_flight = intake_in_flight  # notifications waiting for their commit
        self._next_retry: datetime | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._posting = 0  # batches whose posts are not all answered yet
        self._answered: list[DeliveryResult] = []  # verdicts the next pass keeps
        self._batch_moved = asyncio.Event()  # a batch's posts were answered, or it ended

    def wake(self) -> None:
        """Look for work now (a replay made a delivery due)."""
        self._woken.set()

    async def fan_out(self) -> int:
        """Make deliveries of the events written since the last call; how many were read."""
        return await self._store.fan_out(self.name, self.wants, self._clock(), FAN_OUT_LIMIT)

    async def step(self) -> Step:
        """One whole pass, batch included and kept at once: fan out and claim, post, keep."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self.lease_seconds)
        work = DeliveryRound(
            self.name, self.owner, (), now, lease_until, FAN_OUT_LIMIT, self.batch_size
        )
        outcome = await self._store.advance_deliveries(work, self.wants)
        results = await self.courier.deliver(self._store, self.owner, outcome.claimed, lease_until)
        self._note_retries(results)
        return Step(outcome.read, tuple(results))

    async def run_forever(self) -> None:
        """Deliver until cancelled; a failed pass is logged and waited out (a poll at most)."""
        while True:
            self._woken.clear()
            seen = None if self._watch is None else self._watch.position
            try:
                busy = await self._pass()
            except StorageError as error:
                logger.warning("destination %s: delivery pass failed: %s", self.name, error)
                busy = False
            except Exception:  # a bug must not end this destination's pushes for good
                logger.exception("destination %s: delivery pass failed", self.name)
                busy = False
            if not busy:
                await self._idle(seen)

    async def stop(self, grace_seconds: float) -> None:
        """Let batches in flight finish for up to ``grace_seconds``, then keep their verdicts
        (the loop, cancelled first, keeps no more)."""
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=grace_seconds)
        for task in set(self._batches):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        kept, self._answered = self._answered, []
        try:
            await self.courier.keep(self._store, self.owner, kept)
        except StorageError as error:
            logger.warning("destination %s: verdicts not kept: %s", self.name, error)

    async def _pass(self) -> bool:
        """Keep what was answered, fan out, send one batch off; whether there is more to do."""
        pace = await self.next_pace()
        if self._posting >= pace.batches:
            self._batch_moved.clear()
            await self._batch_moved.wait()
            return True
        kept, self._answered = tuple(self._answered), []
        now = self._clock()
        lease_until = now + timedelta(seconds=self.lease_seconds)
        work = DeliveryRound(
            self.name, self.owner, kept, now, lease_until, pace.fan_out, pace.claim
        )
        try:
            outcome = await self._store.advance_deliveries(work, self.wants)
        except Exception:  # rolled back (not a cancel, whose job may still commit)
            self._answered[:0] = kept  # not kept: the next pass tries again
            raise
        self.courier.observe(kept, outcome.applied)
        self._note_retries(kept)
        if outcome.claimed:
            task = asyncio.create_task(self._post(outcome.claimed, lease_until))
            self._posting += 1
            self._batches.add(task)
            task.add_done_callback(self._batch_done)
        more = bool(outcome.claimed) or bool(self._answered)
        return more or outcome.read >= pace.fan_out

    async def next_pace(self) -> Pace:
        """Whole reads and batches while intake is quiet; short ones while it has commits
        waiting (``SHARED_IN_FLIGHT``; whole ones with push workers); after a pause,
        ``BUSY_PACE`` while it is busy (``BUSY_IN_FLIGHT``)."""
        waiting = self._intake_in_flight()
        if waiting >= BUSY_IN_FLIGHT:
            waiting = await self._look_again()
            if waiting >= BUSY_IN_FLIGHT:
                await asyncio.sleep(BUSY_PAUSE_SECONDS - BUSY_CHECK_SECONDS)
                return BUSY_PACE
        if waiting < SHARED_IN_FLIGHT or self._posts_elsewhere:
            return Pace(FAN_OUT_LIMIT, self.batch_size, BATCHES_IN_FLIGHT)
        return Pace(SHARED_FAN_OUT, self.settings.concurrency * SHARED_ROUNDS)

    async def _look_again(self) -> int:
        """The commits waiting a moment later (a spike is not a burst); with push workers, the
        first count below ``BUSY_IN_FLIGHT`` of ``BUSY_LOOKS`` looks, else the last."""
        waiting = 0
        for _ in range(BUSY_LOOKS if self._posts_elsewhere else 1):
            await asyncio.sleep(BUSY_CHECK_SECONDS)
            waiting = self._intake_in_flight()
            if waiting < BUSY_IN_FLIGHT:
                break
        return waiting

    async def _post(self, claimed: Sequence[ClaimedDelivery], lease_until: datetime) -> None:
        try:
            results = await self.courier.post(claimed, lease_until)
            self._answered.extend(results)  # the list as it is now: a pass may have taken it
        finally:
            self._posting -= 1
            self._batch_moved.set()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._batch_moved.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("destination %s: batch failed", self.name, exc_info=task.exception())
        self._woken.set()

    def _note_retries(self, results: Sequence[DeliveryResult]) -> None:
        """Remember the earliest retry this process scheduled: the loop wakes for it."""
        for result in results:
            due = result.next_attempt_at
            if due is not None and (self._next_retry is None or due < self._next_retry):
                self._next_retry = due

    def _idle_seconds(self) -> float:
        seconds = self.settings.poll_seconds
        if self._next_retry is not None:
            until = (self._next_retry - self._clock()).total_seconds()
            if until <= seconds:
                self._next_retry = None  # this wait covers it
            seconds = max(0.0, min(seconds, until))
        return seconds

    async def _idle(self, seen: EventPosition | None) -> None:
        """Sleep until woken, an event is written, a retry is due or the poll interval passes."""
        seconds = self._idle_seconds()
        waits: list[asyncio.Task[bool]] = [asyncio.create_task(self._woken.wait())]
        if self._watch is not None and seen is not None:
            waits.append(asyncio.create_task(self._watch.wait_beyond(seen, seconds)))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
