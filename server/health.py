"""GET /healthz (the process answers) and GET /readyz (the store answers, keys are loaded and,
with ``[server] intake_workers``, at least one worker serves the intake port)."""

from __future__ import annotations

import time

from aiohttp import web

from server.appkeys import CREDENTIALS, STORE
from server.call_workers import CALL_WORKERS
from server.intake_workers import INTAKE_WORKERS
from storage.errors import StorageError


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, object] = {"apps": len(request.app[CREDENTIALS])}
    ready = bool(request.app[CREDENTIALS])
    started = time.perf_counter()
    try:
        await request.app[STORE].ping()
        checks["store"] = "ok"
        checks["store_ms"] = round((time.perf_counter() - started) * 1000, 2)
    except StorageError as error:
        checks["store"] = error.code
        ready = False
    workers = request.app.get(INTAKE_WORKERS)
    if workers is not None:
        checks["intake_workers"] = len(workers.pids)
        ready = ready and bool(workers.pids)
    callers = request.app.get(CALL_WORKERS)
    if callers is not None:  # informative only: with none serving, calls are made here
        checks["call_workers"] = len(callers.pids)
    status = "ready" if ready else "unready"
    return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)


def setup_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
