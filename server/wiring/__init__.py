"""The one place that builds Subgate's parts and connects them into the aiohttp application:
``app.build_app`` opens the store, the gateway, the ledger, the workers and the routes in
order (``store``-side contexts in ``app``, the sending side in ``sending``) and closes them in
reverse. Nothing imports this package but the entry point (``run.py``) and the tests.
"""

from server.wiring.app import build_app

__all__ = ["build_app"]
