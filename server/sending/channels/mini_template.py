"""``mini_template``: subscribe messages via alipay.open.app.mini.templatemessage.send."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.errors import KeywordTooLong, TemplateDataMismatch, TemplateNotRegistered
from server.platforms.alipay_classic import OpenApiCaller
from server.platforms.calls import CallResult
from server.sending.channels.base import ChannelPlatforms, ChannelSpec, PreparedSend
from server.web.json_body import parse_model
from storage.models import TemplateKind

METHOD = "alipay.open.app.mini.templatemessage.send"
MAX_KEYWORD_CHARS = 50  # the platform refuses longer values (USER_KEYWORD_LENGTH_ERROR)
_ID = r"^[0-9A-Za-z_-]{1,64}$"

# Its sends are gated on the consent channel of the same name (``PreparedSend.ledger_channel``).
NAME = "mini_template"


class KeywordValue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: str


class MiniTemplateSend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["mini_template"]
    to_user_id: str | None = Field(default=None, pattern=_ID)
    to_open_id: str | None = Field(default=None, pattern=_ID)
    template_id: str = Field(pattern=_ID)
    page: str | None = Field(default=None, max_length=500)
    data: dict[str, KeywordValue]

    @model_validator(mode="after")
    def _one_recipient(self) -> Self:
        if (self.to_user_id is None) == (self.to_open_id is None):
            raise ValueError("give exactly one of to_user_id and to_open_id")
        return self


class MiniTemplateChannel:
    name = NAME
    retry_transient = True  # Alipay refuses a one-time send beyond the user's acceptances

    def __init__(self, client: OpenApiCaller) -> None:
        self._client = client

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        send = parse_model(MiniTemplateSend, body)
        template = templates.get(app_id, send.template_id)
        if template is None:
            raise TemplateNotRegistered("register the template under [[apps.templates]] first")
        if list(send.data) != template.keywords:
            raise TemplateDataMismatch(
                f"data must have exactly the template's keywords, in order: {template.keywords}"
            )
        too_long = [k for k, v in send.data.items() if len(v.value) > MAX_KEYWORD_CHARS]
        if too_long:
            raise KeywordTooLong(f"at most {MAX_KEYWORD_CHARS} characters per value: {too_long}")
        recipient = (
            {"to_user_id": send.to_user_id} if send.to_user_id else {"to_open_id": send.to_open_id}
        )
        data = {k: {"value": v.value} for k, v in send.data.items()}
        payload = {
            **recipient,
            "user_template_id": send.template_id,
            "page": send.page or template.page or "",
            "data": json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        }
        return PreparedSend(
            user_id=send.to_user_id or send.to_open_id or "",
            template_id=send.template_id,
            kind=TemplateKind(template.kind),
            payload={k: v for k, v in payload.items() if v},
        )

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        return await self._client.call(app, METHOD, payload)


def _build(platforms: ChannelPlatforms) -> MiniTemplateChannel:
    return MiniTemplateChannel(platforms.alipay)


SPEC = ChannelSpec(MiniTemplateChannel.name, MiniTemplateSend, _build)
