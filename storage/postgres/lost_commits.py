"""A notification whose connection was lost around its COMMIT: did it land?

When the connection breaks while a COMMIT is on its way or its answer is on its way back, the
client cannot tell whether the server committed. For a notification the answer matters: Alipay
is told ``success`` only for what is stored, and what is stored should be counted and logged as
stored. Its key is known, so the question can be asked again on a fresh connection, once the old
server process has ended: a backend that has exited has either committed its transaction or
rolled it back, never anything in between. Until it has ended (a peer that vanished may not be
noticed for a while) the row's absence proves nothing, so after ``wait_seconds`` the caller is
left with its error, and the docs say why a 503 may follow a committed write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

from storage.errors import StorageUnavailable
from storage.models import NotificationRecord, RecordOutcome
from storage.postgres.connection import Conn, Pool, fetch

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


@dataclass
class CommitAttempt:
    """What a notification's transaction knew before its COMMIT: its server process and the id
    its insert took (``None`` until the insert ran, or when the key was already stored)."""

    backend_pid: int | None = None
    inserted_id: int | None = None

    def watch(self, connection: Conn, inserted_id: int | None) -> None:
        self.backend_pid = connection.get_server_pid()
        self.inserted_id = inserted_id


async def settle(
    pool: Pool,
    record: NotificationRecord,
    attempt: CommitAttempt,
    wait_seconds: float = WAIT_SECONDS,
) -> RecordOutcome | None:
    """The outcome the lost commit had, or ``None`` when it cannot be known in time."""
    if attempt.backend_pid is None or attempt.inserted_id is None:
        return None  # nothing was inserted: there was no commit to lose
    try:
        if not await _ended(pool, attempt.backend_pid, wait_seconds):
            return None
        rows = await fetch(
            pool,
            "SELECT id FROM notifications WHERE app_id = $1 AND dedupe_key = $2",
            record.app_id,
            record.dedupe_key,
        )
    except StorageUnavailable:
        return None
    if not rows:
        logger.warning("notification %s: commit lost; it was not stored", record.dedupe_key)
        return None
    landed = rows[0]["id"] == attempt.inserted_id
    logger.warning(
        "notification %s: commit lost; %s",
        record.dedupe_key,
        "it was stored" if landed else "another request stored it",
    )
    return RecordOutcome(notification_id=rows[0]["id"], duplicate=not landed)


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
