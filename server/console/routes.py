"""Every /console route, and the templates and static files they use (package data)."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.console.deliveries import (
    destination_list,
    destination_page,
    replay_one,
    replay_window,
)
from server.console.formatting import FILTERS
from server.console.guard import PREFIX, secure_headers
from server.console.login import log_in, log_out
from server.console.messages import message_detail, message_list
from server.console.notifications import notification_detail, notification_list
from server.console.overview import overview
from server.console.settle import settle
from server.console.users import find_user, user_page

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
    app.router.add_get(f"{PREFIX}/users", find_user)
    add_app_pages(app.router)
    add_delivery_pages(app.router)


def add_app_pages(router: web.UrlDispatcher) -> None:
    """The pages of one app: its notifications, users and messages."""
    app = f"{PREFIX}/apps/{{app_id}}"
    router.add_get(f"{app}/notifications", notification_list)
    router.add_get(f"{app}/notifications/{{notify_id}}", notification_detail)
    router.add_get(f"{app}/users/{{user_id}}", user_page)
    router.add_get(f"{app}/messages", message_list)
    router.add_get(f"{app}/messages/{{message_id}}", message_detail)
    router.add_post(f"{app}/messages/{{message_id}}/settle", settle)


def add_delivery_pages(router: web.UrlDispatcher) -> None:
    """The destinations, their deliveries and the replays."""
    router.add_get(f"{PREFIX}/deliveries", destination_list)
    router.add_get(f"{PREFIX}/deliveries/{{name}}", destination_page)
    router.add_post(f"{PREFIX}/deliveries/{{name}}/replay", replay_one)
    router.add_post(f"{PREFIX}/deliveries/{{name}}/replay-since", replay_window)
