"""Every /console route, and the templates and static files they use (package data)."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.console.formatting import FILTERS
from server.console.guard import PREFIX, secure_headers
from server.console.login import log_in, log_out
from server.console.overview import overview

HERE = Path(__file__).resolve().parent


def setup_console_routes(app: web.Application) -> None:
    """The pages, the login and logout, the static files, the headers every answer carries."""
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("server.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(FILTERS)
    app.on_response_prepare.append(secure_headers)
    app.router.add_static(f"{PREFIX}/static", HERE / "static", append_version=False)
    app.router.add_get(PREFIX, overview)
    app.router.add_post(f"{PREFIX}/login", log_in)
    app.router.add_post(f"{PREFIX}/logout", log_out)
