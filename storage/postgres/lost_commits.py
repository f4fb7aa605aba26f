"""A notification whose connection was lost around its COMMIT: did it land?

When the connection breaks while a COMMIT is on its way or its answer is on its way back, the
client cannot tell whether the server committed. For a notification the answer matters: Alipay
is told ``success`` only for what is stored, and what is stored should be counted and logged as
stored. Its keys are known, so the question can be asked again on a fresh connection, once the old
server process has ended: a backend that has exited has either committed its transaction or
rolled it back, never anything in between. Until it has ended (a peer that vanished may not be
noticed for a while) the row's absence proves nothing, so after ``wait_seconds`` the caller is
left with its error, and the docs say why a 503 may follow a committed write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg

from storage.errors import StorageUnavailable
from storage.postgres.connection import Pool, fetch
from storage.postgres.intake_rows import IDS_OF_KEYS as _IDS_OF_KEYS
from storage.postgres.intake_rows import BatchAttempt, Key

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.01
WAIT_SECONDS = 2.0  # well inside the time Alipay waits for an answer
# SQLSTATE classes of a connection that broke (08) or was ended by an operator (57): the
# transaction's fate is unknown. Any other server error rolled it back.
_AMBIGUOUS_CLASSES = ("08", "57")


def is_ambiguous(error: BaseException) -> bool:
    """Whether ``error`` (what ``transact`` gave up on) may have come after a commit landed."""
    cause = error.__cause__
    if isinstance(cause, asyncpg.PostgresError):
        return str(getattr(cause, "sqlstate", "")).startswith(_AMBIGUOUS_CLASSES)
    return cause is not None


async def settle(
    pool: Pool, attempt: BatchAttempt, keys: Sequence[Key], wait_seconds: float = WAIT_SECONDS
) -> dict[Key, int] | None:
    """The id stored under each of ``keys`` once the lost commit's server process has ended
    (a key not stored is left out), or ``None`` when that cannot be known in time."""
    if attempt.backend_pid is None or not attempt.inserted:
        return None  # nothing was inserted: there was no commit to lose
    try:
        if not await _ended(pool, attempt.backend_pid, wait_seconds):
            return None
        apps, dedupe_keys = [key[0] for key in keys], [key[1] for key in keys]
        rows = await fetch(pool, _IDS_OF_KEYS, apps, dedupe_keys)
    except StorageUnavailable:
        return None
    stored = {(row[0], row[1]): row[2] for row in rows}
    for key in keys:
        logger.warning("notification %s: commit lost; %s", key[1], _fate(key, stored, attempt))
    return stored


def _fate(key: Key, stored: dict[Key, int], attempt: BatchAttempt) -> str:
    if key not in stored:
        return "it was not stored"
    landed = stored[key] == attempt.inserted.get(key)
    return "it was stored" if landed else "another request stored it"


async def _ended(pool: Pool, pid: int, wait_seconds: float) -> bool:
    """Whether server process ``pid`` has exited, waiting up to ``wait_seconds`` for it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        rows = await fetch(pool, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)
        if not rows:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
