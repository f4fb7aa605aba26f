"""Supervising worker processes, shared by the intake and call worker pools: how a worker is
started with its orders, how long to wait before starting a dead one again, how one is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from server.settings import Settings, StorageSettings

logger = logging.getLogger(__name__)


class WorkerStartFailed(RuntimeError):
    """A worker exited, or did not report ready, before it served."""


def next_restart_delay(ran_seconds: float, previous: float) -> float:
    """How long to wait before starting a dead worker again: 0 after one that ran a while, else
    the first back-off, doubling up to the longest."""
    first, longest = RESTART_BACKOFF_SECONDS
    if ran_seconds >= longest:
        return 0.0
    return first if previous <= 0 else min(previous * 2, longest)


async def terminate(process: asyncio.subprocess.Process, grace: float, what: str) -> None:
    """SIGTERM a worker and wait for it; kill it if it has not exited after ``grace`` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        logger.error("%s %d did not stop in time; killing it", what, process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def worker_settings(settings: Settings) -> Settings:
    """What a worker (intake or call) needs: the server, outbox and app sections (keys to verify
    and sign with). Never the API tokens, the TOP secrets or the database URL."""
    return settings.model_copy(update={"tokens": [], "top_apps": [], "storage": StorageSettings()})


RESTART_BACKOFF_SECONDS = (1.0, 30.0)  # first, longest; a worker that ran this long is stable
