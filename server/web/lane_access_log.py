"""The access log line of an answer given on the lane, as aiohttp's default access log writes it.

Operators filter and ship ``aiohttp.access`` for every other answer; an answer given on the lane
goes to the same logger in the same format (``%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i"``),
so the log does not depend on which protocol answered. The level is checked first: production
logs at WARNING, and then a line costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from server.web.lane import LaneRequest

ACCESS_LOG = logging.getLogger("aiohttp.access")


def log_access(transport: asyncio.Transport, request: LaneRequest, status: int, size: int) -> None:
    """``size``: the whole answer's bytes, head included, as aiohttp's ``%b`` counts them."""
    if not ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    peer = transport.get_extra_info("peername")
    remote = peer[0] if isinstance(peer, tuple) and peer else "-"
    stamp = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime())
    line = (
        f"{request.method.decode('latin-1')} {request.url.decode('latin-1')} HTTP/{request.version}"
    )
    referer = request.header(b"referer") or "-"
    agent = request.header(b"user-agent") or "-"
    ACCESS_LOG.info(
        '%s %s "%s" %s %s "%s" "%s"',
        remote,
        stamp,
        line,
        status,
        size,
        referer,
        agent,
    )
