"""/console/apps/{app}/users/{user}: everything the ledger knows about one user, and the search
box on every page that leads there.

Per template and channel: the current state (``can_send``, credits, status, as the /v1 API
answers it) and the whole history, oldest first, with each event's source and evidence; then
the user's newest messages.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from server.api.keys import LEDGER
from server.appkeys import STORE
from server.console.guard import app_of, console_page, render, see_other
from server.console.queries import PAGE_SIZE, user_id
from server.errors import AppNotFound


@console_page
async def user_page(request: web.Request) -> web.StreamResponse:
    app_id = app_of(request)
    user = user_id(request.match_info["user_id"])
    ledger = request.app[LEDGER]
    states = (await ledger.subscriptions(app_id, user)).subscriptions
    histories = [
        (state, await ledger.history(app_id, user, state.template_id, state.channel))
        for state in states
    ]
    messages = await request.app[STORE].messages_of_user(app_id, user, PAGE_SIZE)
    context = {"user_id": user, "histories": histories, "messages": messages}
    return render(request, "user.html", context)


@console_page
async def find_user(request: web.Request) -> web.StreamResponse:
    """The search box: to the user's page in the chosen app."""
    app_id = request.query.get("app_id", "")
    if not app_id:
        raise AppNotFound("choose an app to search in")
    app_of(request, app_id=app_id)
    user = user_id(request.query.get("user_id", "").strip())
    return see_other(f"/console/apps/{quote(app_id)}/users/{quote(user)}")
