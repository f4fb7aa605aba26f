"""Typed keys for the parts every listener reads: settings, the apps' keys and the store.

Each capability keeps the keys of its own parts beside them (``server.intake.keys``,
``server.api.keys``, ...), so that this module imports nothing above the foundation.
"""

from __future__ import annotations

from aiohttp import web

from server.credentials import AppCredentials
from server.settings import Settings
from storage import Store

SETTINGS = web.AppKey("settings", Settings)
CREDENTIALS = web.AppKey("credentials", dict[str, AppCredentials])
STORE = web.AppKey("store", Store)
