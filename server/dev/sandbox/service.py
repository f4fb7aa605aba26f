"""The sandbox as dev mode runs it: an aiohttp server of its own, in Subgate's process, on a
loopback port the system picks.

Same process, not a child: the sandbox is a handful of small handlers that wait on nothing, so
it costs the service's event loop little, and it lives and dies with the service (no process to
supervise, none left behind). Its own port rather than a route of Subgate's: the platform
clients then call it exactly as they call Alipay, across a real HTTP connection to another
origin, and no sandbox route can ever be served by a configured Subgate. The socket is bound
before the settings are made, so the URL every client is given is known and already taken;
it is written to ``data/dev/sandbox_url`` for ``run.py simulate subscribe``.
"""

from __future__ import annotations

import socket
from pathlib import Path

from aiohttp import web

from server.dev.sandbox import classic_protocol, top_protocol
from server.dev.sandbox.classic_gateway import ClassicGateway
from server.dev.sandbox.control import SUBSCRIBE_PATH, USER_PATH, SandboxControl
from server.dev.sandbox.platform import SandboxPlatform
from server.dev.sandbox.top_router import TopRouter
from server.dev.sandbox.v3_gateway import V3Gateway
from server.settings import Settings

HOST = "127.0.0.1"


def sandbox_app(platform: SandboxPlatform) -> web.Application:
    """Every route of the stand-in platform."""
    app = web.Application()
    control = SandboxControl(platform)
    app.router.add_post(classic_protocol.GATEWAY_PATH, ClassicGateway(platform).handle)
    app.router.add_post(top_protocol.PATH, TopRouter(platform).handle)
    app.router.add_route("*", "/v3/{tail:.*}", V3Gateway(platform).handle)
    app.router.add_post(SUBSCRIBE_PATH, control.subscribe)
    app.router.add_get(USER_PATH, control.user)
    return app


class Sandbox:
    """The stand-in platform on its own loopback port, bound at construction."""

    def __init__(self, platform: SandboxPlatform, url_file: Path | None = None) -> None:
        self.platform = platform
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(128)  # a client may connect before the site runs: it waits
        self.url = f"http://{HOST}:{self._socket.getsockname()[1]}"
        self._runner: web.AppRunner | None = None
        if url_file is not None:
            url_file.write_text(self.url + "\n", "ascii")

    def configure(self, settings: Settings) -> Settings:
        """``settings`` with every Alipay app and TOP app pointed at the sandbox."""
        apps = [
            app.model_copy(
                update={
                    "gateway_url": self.url + classic_protocol.GATEWAY_PATH,
                    "v3_gateway_url": self.url,
                }
            )
            for app in settings.apps
        ]
        top_apps = [
            app.model_copy(update={"gateway_url": self.url + top_protocol.PATH})
            for app in settings.top_apps
        ]
        return settings.model_copy(update={"apps": apps, "top_apps": top_apps})

    def attach(self, app: web.Application) -> None:
        """Serve while ``app`` does: started with it, closed after its own clean-up."""
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._close)

    async def start(self) -> None:
        self._runner = web.AppRunner(sandbox_app(self.platform), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._socket.close()

    async def _start(self, app: web.Application) -> None:
        await self.start()

    async def _close(self, app: web.Application) -> None:
        await self.close()
