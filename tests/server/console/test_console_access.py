"""Who gets into the console and what every answer carries: the login form, a refused and an
accepted token, the session cookie's flags, expiry by the service's clock, logout ending the
session on the server, CSRF refusal of a forged POST, and the security headers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.console.guard import COOKIE, POLICY
from tests.server.api_client import ADMIN_TOKEN, READER_TOKEN
from tests.server.conftest import Gateway
from tests.server.console.http import Console, hidden

SECRET_LOOKING = ("token", "whsec_", "PRIVATE KEY")


async def test_without_a_session_the_console_shows_only_the_login_form(console: Console) -> None:
    login = await console.get("/console")

    assert login.status == 200
    assert 'name="token"' in login.text and 'type="submit"' in login.text
    assert "Overview" not in login.text and "2021000000000001" not in login.text


async def test_a_wrong_token_stays_on_the_login_page_with_an_error(console: Console) -> None:
    refused = await console.log_in("not-a-token-0123456789")

    assert refused.status == 401
    assert "not one this Subgate knows" in refused.text and 'name="token"' in refused.text
    assert console.session_key() is None
    assert (await console.get("/console")).text.count('name="token"') == 1


async def test_a_token_opens_a_session_in_a_strict_httponly_expiring_cookie(
    console: Console,
) -> None:
    answer = await console.log_in(ADMIN_TOKEN)

    assert (answer.status, answer.location) == (303, "/console")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/console"):
        assert flag in cookie
    overview = await console.get("/console")
    assert overview.status == 200 and "Overview" in overview.text
    assert ADMIN_TOKEN not in overview.text


async def test_a_login_form_posted_from_elsewhere_opens_nothing(console: Console) -> None:
    forged = await console.post("/console/login", {"token": ADMIN_TOKEN, "login_csrf": "x"})

    assert forged.status == 403 and console.session_key() is None


async def test_a_session_ends_when_idle_and_at_its_lifetime(
    console: Console, gateway: Gateway
) -> None:
    await console.log_in(ADMIN_TOKEN)
    gateway.clock.now += timedelta(minutes=29)
    assert "Overview" in (await console.get("/console")).text  # seen: idle time starts again
    gateway.clock.now += timedelta(minutes=29)
    assert "Overview" in (await console.get("/console")).text
    gateway.clock.now += timedelta(minutes=31)

    assert 'name="token"' in (await console.get("/console")).text

    await console.log_in(ADMIN_TOKEN)
    for _ in range(17):  # never idle, yet over after 8 hours
        gateway.clock.now += timedelta(minutes=29)
        await console.get("/console")
    assert 'name="token"' in (await console.get("/console")).text


async def test_logout_ends_the_session_on_the_server(console: Console) -> None:
    await console.log_in(ADMIN_TOKEN)
    key = console.session_key()
    answer = await console.post("/console/logout", {"csrf": await console.csrf()})
    assert (answer.status, answer.location) == (303, "/console")
    console.client.session.cookie_jar.update_cookies({COOKIE: key or ""})  # a kept copy

    assert 'name="token"' in (await console.get("/console")).text


async def test_a_post_without_the_sessions_csrf_token_is_refused(console: Console) -> None:
    await console.log_in(ADMIN_TOKEN)

    forged = await console.post("/console/logout", {"csrf": "forged"})
    missing = await console.post("/console/logout", {})

    assert forged.status == missing.status == 403
    assert forged.headers["X-Subgate-Error"] == "csrf_refused"
    assert "Overview" in (await console.get("/console")).text  # still logged in


@pytest.mark.parametrize("path", ["/console", "/console/static/console.css", "/console/nowhere"])
async def test_every_console_answer_carries_the_security_headers(
    console: Console, path: str
) -> None:
    await console.log_in(READER_TOKEN)

    answer = await console.get(path)

    assert answer.headers["Content-Security-Policy"] == POLICY
    assert "frame-ancestors 'none'" in POLICY and "'unsafe-inline'" not in POLICY
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


async def test_pages_carry_no_inline_script_or_style(console: Console) -> None:
    await console.log_in(ADMIN_TOKEN)

    text = (await console.get("/console")).text

    assert "<script>" not in text and "<style" not in text and "style=" not in text
    assert hidden(text, "csrf")
    assert not any(secret in text for secret in ("whsec_", "PRIVATE KEY"))
