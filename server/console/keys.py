"""Typed keys of the console: its state on the application, the session on a request."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from server.console.sessions import Session, SessionBook
from server.runtime.clock import Clock


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """What every console page shares: the sessions, and the service's clock."""

    sessions: SessionBook
    clock: Clock


CONSOLE = web.AppKey("console", ConsoleState)
SESSION = web.RequestKey("console_session", Session)
