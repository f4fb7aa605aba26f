"""Closing a connection whose client may still be sending: half-close, then close.

Closing at once, with the client's bytes still arriving unread, makes the kernel reset the
connection, and a reset can discard our last answer before the client reads it.
"""

from __future__ import annotations

import asyncio

# How long a client has to read our last answer once we have half-closed.
LINGER_SECONDS = 1.0


def close_gently(transport: asyncio.Transport) -> asyncio.TimerHandle | None:
    """Half-close now (the client reads our answer, then end of stream) and close fully after
    ``LINGER_SECONDS``, or sooner when the client closes its side (the transport then closes
    itself); what arrives meanwhile is read and dropped by the caller."""
    if transport.is_closing():
        return None
    transport.write_eof()
    return asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
