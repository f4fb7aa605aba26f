"""What the TOP channels share: the ``top_app`` a send names, resolved against ``[[top_apps]]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import Field

from server.credentials import AppCredentials, TopAppCredentials
from server.errors import UnknownTopApp
from server.platforms.calls import CallOutcome, CallResult
from server.platforms.top import TopClient

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


class TopChannel:
    """A channel that calls one TOP API with the credentials of the ``top_app`` a send names."""

    method: ClassVar[str]
    retry_transient = True

    def __init__(self, client: TopClient, top_apps: Mapping[str, TopAppCredentials]) -> None:
        self._client = client
        self._top_apps = top_apps

    def call_params(self, payload: Mapping[str, Any], recipients: Sequence[str]) -> dict[str, Any]:
        """The API parameters for a prepared ``payload`` and the recipients consent allowed."""
        raise NotImplementedError

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        top_app = top_app_or_refusal(self._top_apps, payload.get("top_app"))
        if isinstance(top_app, CallResult):
            return top_app
        return await self._client.call(top_app, self.method, self.call_params(payload, recipients))
