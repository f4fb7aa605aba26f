"""Logging in with an API token, and out.

The token is checked by the same ``TokenRing`` the /v1 API uses; the session keeps its grant,
never the token. A wrong token shows the login page again with an error and nothing else.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from server.api.keys import TOKENS
from server.console.guard import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    console_page,
    cookie_flags,
    login_form,
    see_other,
    within_console,
)
from server.console.keys import CONSOLE
from server.errors import Unauthorized

_REFUSED = "That token is not one this Subgate knows."
_STALE = "The login form had expired. Please enter the token again."


async def log_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    nonce = str(form.get("login_csrf", ""))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(nonce.encode(), cookie.encode()):
        return await login_form(request, _STALE, 403, str(form.get("next", "")))
    try:
        grant = request.app[TOKENS].authenticate(f"Bearer {form.get('token', '')}")
    except Unauthorized:
        return await login_form(request, _REFUSED, 401, str(form.get("next", "")))
    sessions = request.app[CONSOLE].sessions
    key = sessions.open(grant)
    response = see_other(within_console(str(form.get("next", PREFIX))))
    response.set_cookie(COOKIE, key, **cookie_flags(request, sessions.lifetime_seconds))
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@console_page
async def log_out(request: web.Request) -> web.StreamResponse:
    request.app[CONSOLE].sessions.close(request.cookies.get(COOKIE))
    response = see_other(PREFIX)
    response.del_cookie(COOKIE, path=PREFIX)
    return response
