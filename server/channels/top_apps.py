"""What the TOP channels share: the ``top_app`` a send names, resolved against ``[[top_apps]]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

from server.credentials import TopAppCredentials
from server.errors import UnknownTopApp
from server.platform_calls import CallOutcome, CallResult

TopAppName = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
# A TOP Number (Java long): a JSON integer, never a string or a boolean.
TopNumber = Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]


def require_top_app(top_apps: Mapping[str, TopAppCredentials], name: str) -> None:
    """At validation: a send may only name a configured TOP app (422, nothing reserved)."""
    if name not in top_apps:
        raise UnknownTopApp(f"top_app {name!r} is not one of the [[top_apps]] names")


def top_app_or_refusal(
    top_apps: Mapping[str, TopAppCredentials], name: object
) -> TopAppCredentials | CallResult:
    """At delivery: the app, or a definite failure if it left the configuration meanwhile."""
    app = top_apps.get(name) if isinstance(name, str) else None
    if app is None:
        return CallResult(
            CallOutcome.REJECTED, error="the top_app is no longer configured; nothing was sent"
        )
    return app
