"""GET /healthz (the process answers) and GET /readyz (the store answers, keys are loaded and
every worker pool that readiness depends on has a worker serving)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from server.appkeys import CREDENTIALS, STORE
from storage.errors import StorageError


class ServingPool(Protocol):
    @property
    def pids(self) -> Sequence[int]:
        """The workers serving now."""


@dataclass(frozen=True)
class PoolCheck:
    """A worker pool /readyz reports; ``required``: with none serving, the service is unready."""

    pool: ServingPool
    required: bool


WORKER_POOLS = web.AppKey("worker_pools", dict[str, PoolCheck])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = await readiness(request.app)
    status = "ready" if ready else "unready"
    return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)


async def readiness(app: web.Application) -> tuple[bool, dict[str, object]]:
    """Is the service ready, and what each check found: what /readyz answers and the operator
    console shows."""
    checks: dict[str, object] = {"apps": len(app[CREDENTIALS])}
    ready = bool(app[CREDENTIALS])
    started = time.perf_counter()
    try:
        await app[STORE].ping()
        checks["store"] = "ok"
        checks["store_ms"] = round((time.perf_counter() - started) * 1000, 2)
    except StorageError as error:
        checks["store"] = error.code
        ready = False
    for name, check in app.get(WORKER_POOLS, {}).items():
        checks[name] = len(check.pool.pids)
        ready = ready and (bool(check.pool.pids) or not check.required)
    return ready, checks


def watch_pool(app: web.Application, name: str, check: PoolCheck) -> None:
    """Report a worker pool on /readyz (registered by whoever starts the pool)."""
    app.setdefault(WORKER_POOLS, {})[name] = check


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
