"""The event loop that serves: uvloop when it is installed, else asyncio's own.

uvloop's transports do the per-request socket work in C; on the intake benchmark it serves
more notifications per CPU-second than asyncio's selector loop (``bench/README.md``). It is
optional: ``[server] event_loop = "asyncio"`` turns it off, and ``"uvloop"`` insists on it.
"""

from __future__ import annotations

import asyncio
import importlib

from server.settings import EventLoopChoice, SettingsError


def new_event_loop(choice: EventLoopChoice) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new loop as ``choice`` asks, and the name of the one it is."""
    if choice == "asyncio":
        return asyncio.new_event_loop(), "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SettingsError(
                'server.event_loop = "uvloop" but uvloop is not installed (pip install uvloop)'
            ) from None
        return asyncio.new_event_loop(), "asyncio"
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop, "uvloop"
