"""Debian's Chromium driven by Playwright, for the console's flows.

The tests never run ``playwright install``: they launch ``/usr/bin/chromium`` (``apt-get install
-y chromium``; ``.ci/run`` installs it). Where it is missing they say so and skip. Each page a
test visits can be saved as a screenshot, at a laptop's and a phone's width, under
``tests/server/console/screenshots/`` (ignored by git), to look at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent / "screenshots"  # Playwright makes it when it saves
LAPTOP = ViewportSize(width=1366, height=900)
PHONE = ViewportSize(width=390, height=844)


CHROMIUM_INSTALLED = CHROMIUM.exists()  # read once, at import


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM_INSTALLED:
        pytest.skip(
            "Debian's chromium is not installed here (apt-get install -y chromium), so the "
            "console's browser tests do not run; CI installs it"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


class Tab:
    """One browser tab on a Subgate, keeping every CSP violation and script error it saw."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())  # confirm() of an action: yes

    def _console(self, message: object) -> None:
        """A CSP violation ("Refused to ...") or a script's error; a page answered with an
        error status is the test's to check, not a problem of the page."""
        kind, text = getattr(message, "type", ""), str(getattr(message, "text", message))
        if kind in ("error", "warning") and not text.startswith("Failed to load resource"):
            self.problems.append(text)

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def log_in(self, token: str) -> None:
        await self.page.get_by_label("API token").fill(token)
        await self.page.get_by_role("button", name="Log in").click()
        await self.page.wait_for_load_state()

    async def shot(self, name: str) -> None:
        """The page as it is now, at a laptop's and at a phone's width."""
        for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
            await self.page.set_viewport_size(size)
            await self.page.screenshot(path=SHOTS / f"{name}-{label}.png", full_page=True)
        await self.page.set_viewport_size(LAPTOP)


@asynccontextmanager
async def tab(browser: Browser, base: str) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport=LAPTOP)
    try:
        yield Tab(await context.new_page(), base)
    finally:
        await context.close()
