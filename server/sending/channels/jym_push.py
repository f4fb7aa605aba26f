"""``jym_push``: a 交易猫 app push through TOP ``taobao.jym.message.apppush.send``
(docs/sending.md).

Consent: a granted opt-in on ledger channel ``jym_push`` for (``str(user_id)``,
``str(template_id)``), set with ``PUT …/consents/jym_push/{template_id}``.

The platform's ``message_id`` is Subgate's message id, derived from the app and the
Idempotency-Key: every retry of the request, and every outbox retry after a transient answer,
sends the same ``message_id``, so a retry is the same push as far as the platform can tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.consent.templates import TemplateRegistry
from server.platforms.top import JYM_APPPUSH_SEND
from server.sending.channels.base import ChannelPlatforms, ChannelSpec, PreparedSend
from server.sending.channels.top_apps import TopAppName, TopChannel, TopNumber, require_top_app
from server.web.json_body import parse_model
from storage.models import TemplateKind

# Its sends are gated on the consent channel of the same name (``PreparedSend.ledger_channel``).
NAME = "jym_push"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PushContent(_Strict):
    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=2000)
    redirect_url: str | None = Field(default=None, min_length=1, max_length=2048)
    redirect_url_type: int | None = Field(default=None, strict=True, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _type_needs_url(self) -> Self:
        if self.redirect_url_type is not None and self.redirect_url is None:
            raise ValueError("redirect_url_type needs a redirect_url")
        return self


class JymPushSend(_Strict):
    """An app push to one 交易猫 user who opted in to the template."""

    channel: Literal["jym_push"]
    top_app: TopAppName
    user_id: TopNumber
    template_id: TopNumber
    push_content: PushContent


def push_content_dto(content: PushContent) -> dict[str, Any]:
    """``push_content_dto`` as the seed nests it: the redirect in ``push_redirect_url_dto``."""
    dto: dict[str, Any] = {}
    if content.redirect_url is not None:
        redirect: dict[str, Any] = {"redirect_url": content.redirect_url}
        if content.redirect_url_type is not None:
            redirect["redirect_url_type"] = content.redirect_url_type
        dto["push_redirect_url_dto"] = redirect
    dto["title"] = content.title
    dto["content"] = content.content
    return dto


class JymPushChannel(TopChannel):
    name = NAME
    method = JYM_APPPUSH_SEND
    retry_transient = True  # always with the same message_id

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        send = parse_model(JymPushSend, body)
        require_top_app(self._top_apps, send.top_app)
        params = {
            "user_id": send.user_id,
            "message_id": message_id,
            "template_id": send.template_id,
            "push_content_dto": push_content_dto(send.push_content),
        }
        return PreparedSend(
            user_id=str(send.user_id),
            template_id=str(send.template_id),
            kind=TemplateKind.LONG_TERM,  # an opt-in is a standing grant (no credits)
            payload={"top_app": send.top_app, "params": params},
        )

    def call_params(self, payload: Mapping[str, Any], recipients: Sequence[str]) -> dict[str, Any]:
        return dict(payload["params"])


def _build(platforms: ChannelPlatforms) -> JymPushChannel:
    return JymPushChannel(platforms.top, platforms.top_apps)


SPEC = ChannelSpec(JymPushChannel.name, JymPushSend, _build)
