"""aiohttp's ``TestServer`` listening as ``run.py serve`` listens (``GuardedSite``): the
notification lane and the connection guards in front of aiohttp, so that every test driving
Subgate through a ``TestClient`` meets what production serves, not aiohttp's bare site."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestServer
from yarl import URL

from server.appkeys import SETTINGS
from server.runtime.open_files import connection_cap, raise_open_file_limit
from server.web.serving import GuardedSite, guarded_runner


class GuardedTestServer(TestServer):
    site: GuardedSite | None = None

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner:
            return
        self.runner = runner = guarded_runner(self.app)
        await runner.setup()
        cap = connection_cap(self.app[SETTINGS], raise_open_file_limit())
        self.site = site = GuardedSite(runner, self.host, 0, cap)
        await site.start()
        self.port = site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")
