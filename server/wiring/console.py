"""The operator console's part of the application: its sessions on the service's clock, its
routes and headers (``server.console``)."""

from __future__ import annotations

from aiohttp import web

from server.console.keys import CONSOLE, ConsoleState
from server.console.routes import setup_console_routes
from server.console.sessions import SessionBook
from server.runtime.clock import Clock
from server.settings import Settings


def add_console(app: web.Application, settings: Settings, clock: Clock) -> None:
    """Serve /console unless ``[console] enabled = false``."""
    if not settings.console.enabled:
        return
    app[CONSOLE] = ConsoleState(SessionBook(settings.console, clock), clock)
    setup_console_routes(app)
