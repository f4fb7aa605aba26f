"""What every worker process does around its own serving: take its orders from the parent on
stdin (``server.workers.orders``), log as the parent does, run on the configured event loop, and
exit 2 when it cannot serve (the parent then reports the worker as failed to start)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from server.runtime.event_loop import new_event_loop
from server.runtime.log_format import LogFormat, configure_logging
from server.runtime.open_files import raise_open_file_limit
from server.settings import EventLoopChoice
from server.workers.orders import decode_orders


class _Orders(Protocol):
    @property
    def event_loop(self) -> EventLoopChoice: ...

    @property
    def log_level(self) -> int: ...

    @property
    def log_format(self) -> LogFormat: ...


Orders = TypeVar("Orders", bound=_Orders)


def run_worker(
    kind: str,
    orders_type: type[Orders],
    serve: Callable[[Orders], Coroutine[Any, Any, None]],
    cannot_serve: tuple[type[Exception], ...],
    logger: logging.Logger,
) -> int:
    """The body of a worker's ``main``: its exit status. ``cannot_serve``: the errors that end
    it with status 2 and one log line instead of a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    orders = decode_orders(orders_type, sys.stdin.buffer.readline())
    configure_logging(orders.log_level, orders.log_format)
    raise_open_file_limit()  # as the primary did: client connections and outbound calls need them
    loop, _ = new_event_loop(orders.event_loop)
    try:
        loop.run_until_complete(serve(orders))
    except cannot_serve as error:
        logger.error("%s %d cannot serve: %s", kind, os.getpid(), error)
        return 2
    finally:
        with contextlib.suppress(Exception):
            loop.close()
    return 0
