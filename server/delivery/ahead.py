"""Requests built ahead: a post's payload, signatures and bytes made while the loop waits on the
posts in flight, instead of when a slot frees.

A destination's posts go out in rounds: the answers to the posts in flight tend to arrive
together, and each freed slot starts its next post at once. Building a payload on that path
delays every post behind it in the round, while the receiver waits. So when a post is written,
the requests of the next deliveries waiting for a slot (as many as there are slots) are built in
a callback that runs after the round's other posts are written, in time the loop would otherwise
spend waiting for answers; a freed slot then only writes.

Signatures carry the second they were made in: a request built in an earlier second than its
attempt is signed again, so ``webhook-timestamp`` is always the attempt's.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

Item = TypeVar("Item")


class Prepared(NamedTuple):
    """One post's request: its payload, the second its signatures are for, the whole bytes."""

    body: bytes
    timestamp: int
    encoded: bytes


@dataclass(eq=False, slots=True)
class Waiting(Generic[Item]):
    """A post waiting for a slot (a claimed delivery, or what a push worker was handed), with
    its request once built ahead."""

    claimed: Item
    prepared: Prepared | None = None
    tried: bool = False  # built ahead once, failed or not: the attempt itself builds (and says why)


class Ahead(Generic[Item]):
    """The posts waiting for one destination's slots, oldest first, and their requests
    built ahead by ``build`` (a request for the current second; it may raise)."""

    def __init__(self, build: Callable[[Item], Prepared], width: int) -> None:
        self._build = build
        self._width = width
        self._queue: deque[Waiting[Item]] = deque()
        self._due = False

    def join(self, claimed: Item) -> Waiting[Item]:
        """``claimed`` now waits for a slot."""
        waiting = Waiting(claimed)
        self._queue.append(waiting)
        return waiting

    def leave(self, waiting: Waiting[Item]) -> None:
        """``waiting`` has its slot (or gave up waiting)."""
        if self._queue and self._queue[0] is waiting:
            self._queue.popleft()
        else:
            self._queue.remove(waiting)

    def build_soon(self) -> None:
        """Build the next requests once the callbacks ready now have run (a post being written
        is one of them)."""
        if not self._due and self._queue:
            self._due = True
            asyncio.get_running_loop().call_soon(self._build_next)

    def _build_next(self) -> None:
        self._due = False
        for waiting in itertools.islice(self._queue, self._width):
            if not waiting.tried:
                waiting.tried = True
                try:
                    waiting.prepared = self._build(waiting.claimed)
                except Exception:  # the attempt builds it again, and reports why
                    waiting.prepared = None
