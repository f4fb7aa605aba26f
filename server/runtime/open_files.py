"""The open-file limit: raised to its hard value at start, and the share of it left to clients.

Every connection a client holds is a file descriptor. A process out of descriptors fails its
``accept`` calls (asyncio then stops accepting for a while, so genuine notifications are reset),
and its store, its workers and its outbound calls fail with it. So each process raises its soft
limit as far as the hard one allows, keeps a reserve for everything that is not a client
connection, and caps client connections below the rest (``server.max_connections``; past the cap
server/web/connection_guard.py answers 503 at once). The reserve is a generous estimate, counted
from the settings; it is not measured.
"""

from __future__ import annotations

import logging
import resource

from server.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

# Standard streams, log files, the listening sockets, the event loop's own descriptors, files
# read while serving (keys, certificates, CA bundles).
BASE_RESERVE = 64
# The shared outbound aiohttp ClientSession: its connector keeps at most 100 connections.
OUTBOUND_RESERVE = 100
# Each destination's own connections (server/delivery/pool.py): at most its concurrency.
# SQLite: each connection holds the file, its WAL and its shared memory (PostgreSQL adds
# storage.pool_max sockets, counted separately).
STORE_RESERVE = 16
# A worker process, as seen from the primary: its socket and its pipes.
PER_WORKER_RESERVE = 4
# Connections being turned away past the cap: each holds its descriptor until the client has
# read its 503 (server/web/connection_guard.py), and one turn of the event loop accepts up to the
# listen backlog before any of them is closed.
TURN_AWAY_RESERVE = 128
# The most a soft limit is raised to when the hard limit is "unlimited" (macOS, where the kernel
# refuses an unlimited soft limit).
UNLIMITED_TARGET = 10240


def raise_open_file_limit() -> int:
    """Raise the soft limit to the hard one, as far as the system lets; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_TARGET  # as many as this module plans for
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        logger.warning("open-file limit left at %d: %s", soft, error)
        return soft
    return target


def reserved_descriptors(settings: Settings) -> int:
    """Descriptors kept for everything but client connections."""
    workers = settings.server.intake_workers + settings.outbox.call_processes
    return (
        BASE_RESERVE
        + OUTBOUND_RESERVE
        + sum(destination.concurrency for destination in settings.destinations)
        + STORE_RESERVE
        + settings.storage.pool_max
        + PER_WORKER_RESERVE * workers
        + TURN_AWAY_RESERVE
    )


def connection_cap(settings: Settings, limit: int) -> int:
    """The most client connections this process keeps open, under the open-file ``limit``.

    By default the limit less the reserve, and never less than a quarter of the limit (the
    reserve is an overestimate; a small limit still serves). An explicit
    ``server.max_connections`` above that is refused: it would let clients take the descriptors
    the store and the workers need.
    """
    ceiling = max(limit - reserved_descriptors(settings), limit // 4)
    wanted = settings.server.max_connections
    if wanted is None:
        return ceiling
    if wanted > ceiling:
        raise SettingsError(
            f"server.max_connections = {wanted} leaves too few file descriptors: the open-file "
            f"limit is {limit} and {reserved_descriptors(settings)} are kept for the store, the "
            f"workers and outbound calls; lower it to at most {ceiling} or raise the limit "
            "(ulimit -n, or LimitNOFILE= in a systemd unit)"
        )
    return wanted
