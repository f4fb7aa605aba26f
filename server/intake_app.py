"""The application each intake worker serves on ``[server] intake_port``: the notification
routes and /healthz, its gateway keeping what it verifies through the relay (``server/relay.py``).
Every worker binds the port with SO_REUSEPORT and the kernel spreads connections across them.
"""

from __future__ import annotations

from aiohttp import web

from server.appkeys import GATEWAY, SETTINGS
from server.gateway import NotificationGateway
from server.health import healthz
from server.logredact import redact_parser_errors
from server.metrics import METRICS, Metrics
from server.middleware import error_middleware
from server.notify import setup_notify_routes
from server.relay import CALL_TIMEOUT_SECONDS
from server.settings import Settings


def intake_app(
    settings: Settings, gateway: NotificationGateway, metrics: Metrics
) -> web.Application:
    redact_parser_errors()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[GATEWAY] = gateway
    setup_notify_routes(app)
    app.router.add_get("/healthz", healthz)
    return app


async def start_intake_site(app: web.Application, settings: Settings) -> web.AppRunner:
    """Serve ``app`` on the intake port, shared with the other intake processes."""
    # Requests in flight at shutdown may wait for the primary's answer up to the relay's timeout.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=CALL_TIMEOUT_SECONDS + 5)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.intake_port, reuse_port=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
