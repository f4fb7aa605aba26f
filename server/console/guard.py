"""Who may see a console page, and what every console answer carries.

Every answer under /console gets a strict Content-Security-Policy (scripts and styles only from
/console/static, no inline code, no framing) and ``Referrer-Policy: no-referrer``; pages are
never cached. A page needs a live session (``sessions``), else it shows the login form; a POST
also needs the session's CSRF token in its form; an app's page needs a grant covering the app,
and an action the ``write`` scope. A refusal is a page of its own with its status and code (in
``X-Subgate-Error`` too, as elsewhere).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server.api.auth import Scope
from server.appkeys import SETTINGS
from server.console.keys import CONSOLE, SESSION
from server.errors import (
    STATUS_BY_CODE,
    SUBGATE_ERRORS,
    AppNotFound,
    CsrfRefused,
    SubgateError,
    error_message,
)
from server.web.error_middleware import ERROR_HEADER

PREFIX = "/console"
COOKIE = "subgate_console"
LOGIN_COOKIE = "subgate_console_login"
CSRF_FIELD = "csrf"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_ENDED = "Your session has ended, so nothing was changed. Please log in again."
Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_console(request: web.Request) -> bool:
    return request.path == PREFIX or request.path.startswith(f"{PREFIX}/")


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every console answer, errors and static files included (``on_response_prepare``)."""
    if not is_console(request):
        return
    response.headers.update(HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"


def console_page(handler: Page) -> Page:
    """A page behind the login: without a session, the login form (and the page to go back to);
    a POST without the session's CSRF token is refused before ``handler`` runs."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        session = request.app[CONSOLE].sessions.find(request.cookies.get(COOKIE))
        if session is None and request.method == "POST":
            return await login_form(request, _ENDED, 401, PREFIX)
        if session is None:
            return await login_form(request)
        request[SESSION] = session
        try:
            if request.method == "POST":
                await require_csrf(request)
            return await handler(request)
        except SUBGATE_ERRORS as error:
            return refusal(request, error)

    return guarded


async def require_csrf(request: web.Request) -> None:
    form = await request.post()
    presented = str(form.get(CSRF_FIELD, ""))
    if not hmac.compare_digest(presented.encode(), request[SESSION].csrf.encode()):
        raise CsrfRefused("this form is not one the console gave this session; reload the page")


def visible_apps(request: web.Request) -> list[str]:
    """The configured apps the session's token may see, in the settings' order."""
    grant = request[SESSION].grant
    return [a.app_id for a in request.app[SETTINGS].apps if grant.covers((a.app_id,))]


def app_of(request: web.Request, scope: Scope = "read", app_id: str | None = None) -> str:
    """The page's app (or ``app_id``), when it is configured and the session's token may act
    for it."""
    app_id = app_id or request.match_info["app_id"]
    if app_id not in {a.app_id for a in request.app[SETTINGS].apps}:
        raise AppNotFound("no [[apps]] entry has this app_id")
    request[SESSION].grant.require(app_id, scope)
    return app_id


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page with what the layout shows: the apps to search in and the session's CSRF token."""
    session = request.get(SESSION)
    app_id = request.match_info.get("app_id")
    layout: dict[str, Any] = {"session": session, "path": request.path, "app_id": app_id}
    if session is not None:
        layout |= {"csrf": session.csrf, "apps": visible_apps(request)}
        layout["can_write"] = "write" in session.grant.scopes
    return aiohttp_jinja2.render_template(template, request, layout | context, status=status)


def refusal(request: web.Request, error: SubgateError) -> web.Response:
    """A refused request as a page: what went wrong, its status and its code."""
    status = STATUS_BY_CODE.get(error.code, 500)
    context = {"code": error.code, "message": error_message(error), "status": status}
    response = render(request, "refused.html", context, status=status)
    response.headers[ERROR_HEADER] = error.code
    return response


async def login_form(
    request: web.Request,
    error: str | None = None,
    status: int | None = None,
    wanted: str | None = None,
) -> web.Response:
    """The login page: a token field, and where to go once logged in. Its form carries a
    random value that must come back with the login cookie of the same value (a login
    forged from another site has no such cookie)."""
    back = within_console(wanted or request.path_qs)
    if status is None:
        status = 200 if request.path == PREFIX else 401
    nonce = secrets.token_urlsafe(16)
    context = {"error": error, "next": back, "login_csrf": nonce}
    response = render(request, "login.html", context, status=status)
    response.set_cookie(LOGIN_COOKIE, nonce, **cookie_flags(request, 3600))
    return response


def cookie_flags(request: web.Request, max_age: int) -> dict[str, Any]:
    """What every console cookie is: HttpOnly, SameSite=Strict, for /console only, expiring;
    Secure when the console is served over TLS."""
    return {
        "max_age": max_age,
        "path": PREFIX,
        "httponly": True,
        "samesite": "Strict",
        "secure": request.secure,
    }


def within_console(path: str) -> str:
    """``path`` when it is a console page of this host, else the overview (never a redirect
    to another site)."""
    inside = path == PREFIX or path.startswith((f"{PREFIX}/", f"{PREFIX}?"))
    return path if inside and "\\" not in path else PREFIX


def see_other(location: str) -> web.Response:
    """303: after a POST, the browser loads ``location`` with a GET."""
    return web.Response(status=303, headers={"Location": location})
