"""The sandbox's own routes, which no real platform has: what the dev user does in the Alipay
app, and what the platform holds about a user.

``POST /sandbox/users/{user}/subscribe`` ``{"template_id": ..., "accept": true}`` is the user
answering the subscribe panel of ``my.requestSubscribeMessage``: the platform records it (its
subscription query then says so), and the answer is the callback result the mini-program gets,
which ``run.py simulate subscribe`` reports to Subgate. ``GET /sandbox/users/{user}`` shows the
user's subscriptions and every message the sandbox delivered.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.dev.sandbox.platform import SandboxPlatform

INVALID_TEMPLATE = 106008  # the client's code for an invalid or unsubscribable template id
SUBSCRIBE_PATH = "/sandbox/users/{user_id}/subscribe"
USER_PATH = "/sandbox/users/{user_id}"


class SubscribeChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template_id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    accept: bool = True


def callback_result(template_id: str, accept: bool) -> dict[str, Any]:
    """What ``my.requestSubscribeMessage``'s success callback hands the mini-program."""
    chosen = [template_id]
    return {
        "success": True,
        "behavior": "subscribe",
        "show": True,
        "keep": False,
        "refuse": False,
        "result": {
            "subscribeEntityIds": chosen,
            "subscribedEntityIds": chosen if accept else [],
            "unsubscribedEntityIds": [] if accept else chosen,
            "currentSubscribedEntityIds": chosen if accept else [],
        },
        template_id: "accept" if accept else "reject",
    }


def failed_callback(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "behavior": "", "errorCode": code, "errorMessage": message}


class SandboxControl:
    def __init__(self, platform: SandboxPlatform) -> None:
        self._platform = platform

    async def subscribe(self, request: web.Request) -> web.Response:
        user = request.match_info["user_id"]
        try:
            choice = SubscribeChoice.model_validate_json(await request.read())
        except ValidationError as error:
            problem = error.errors(include_url=False, include_input=False)[0]["msg"]
            return web.json_response({"error": problem}, status=400)
        kind = self._platform.templates.get(choice.template_id)
        if kind is None:
            message = f"{choice.template_id} is not one of the app's templates"
            return web.json_response(failed_callback(INVALID_TEMPLATE, message))
        self._platform.record.subscribe(user, choice.template_id, kind, choice.accept)
        return web.json_response(callback_result(choice.template_id, choice.accept))

    async def user(self, request: web.Request) -> web.Response:
        return web.json_response(self._platform.record.user(request.match_info["user_id"]))
