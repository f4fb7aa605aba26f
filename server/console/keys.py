"""Typed keys of the console: its state on the application, the session on a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from server.console.sessions import Session, SessionBook
from server.console.tallies import NotificationTallies
from server.runtime.clock import Clock


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """What every console page shares: the sessions, the service's clock, and the overview's
    settled counts."""

    sessions: SessionBook
    clock: Clock
    tallies: NotificationTallies = field(default_factory=NotificationTallies)


CONSOLE = web.AppKey("console", ConsoleState)
SESSION = web.RequestKey("console_session", Session)
