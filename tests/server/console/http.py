"""A console session over HTTP: log in as a browser would (the login form's value and its
cookie), then read pages and post forms with the session's CSRF token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.console.guard import COOKIE

_HIDDEN = r'name="{name}" value="([^"]*)"'


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]
    location: str | None


def hidden(text: str, name: str) -> str:
    """The value of a hidden form field of a page."""
    match = re.search(_HIDDEN.format(name=name), text)
    assert match is not None, f"no hidden field {name!r}"
    return match.group(1)


async def page(response: ClientResponse) -> Page:
    text = await response.text()
    return Page(response.status, text, dict(response.headers), response.headers.get("Location"))


class Console:
    """One browser's view of the console (the client's cookie jar is the browser's)."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def get(self, path: str) -> Page:
        return await page(await self.client.get(path, allow_redirects=False))

    async def post(self, path: str, form: dict[str, str]) -> Page:
        return await page(await self.client.post(path, data=form, allow_redirects=False))

    async def log_in(self, token: str, wanted: str = "/console") -> Page:
        login = await self.get(wanted)
        form = {"token": token, "login_csrf": hidden(login.text, "login_csrf")}
        return await self.post("/console/login", form | {"next": hidden(login.text, "next")})

    async def csrf(self) -> str:
        return hidden((await self.get("/console")).text, "csrf")

    def session_key(self) -> str | None:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == COOKIE:
                return cookie.value
        return None
