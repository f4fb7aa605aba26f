"""How busy the event loop is, as a task living on it feels it: the time one yield takes.

A yield (``asyncio.sleep(0)``) comes back after the loop has run every callback that was ready
before it: at rest that is microseconds, while the loop serves many connections it is the length
of a whole iteration. Work that can wait (pushing events on) uses it to give way to work that
cannot (acknowledging Alipay, answering lookups).
"""

from __future__ import annotations

import asyncio
import time


async def yield_seconds(yields: int = 1) -> float:
    """Seconds the quickest of ``yields`` yields to the loop took: with several, a single long
    iteration (one slow callback, a burst of answers) does not read as a busy loop."""
    quickest = float("inf")
    for _ in range(yields):
        started = time.perf_counter()
        await asyncio.sleep(0)
        quickest = min(quickest, time.perf_counter() - started)
    return quickest
