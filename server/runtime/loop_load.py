"""How busy the event loop is, as a task living on it feels it: the time one yield takes.

A yield (``asyncio.sleep(0)``) comes back after the loop has run every callback that was ready
before it: at rest that is microseconds, while the loop serves many connections it is the length
of a whole iteration. Work that can wait (pushing events on) uses it to give way to work that
cannot (acknowledging Alipay, answering lookups).
"""

from __future__ import annotations

import asyncio
import time


async def yield_seconds() -> float:
    """Seconds one yield to the loop took."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    return time.perf_counter() - started
