"""``workcore_batch``: a batch message through TOP ``alibaba.ib.workcore.message.batchsendmsg``
(docs/sending.md).

Consent is split per receiver: ledger channel ``workcore``, template = ``action`` (set with
``PUT …/consents/workcore/{action}``). Only receivers with a granted opt-in are sent (the
``receiver`` field is the JSON list of them); the others are listed as skipped with the reason.
No consenting receiver: 403 ``consent_required`` and nothing is sent.

A transient answer is retried like a template message. The call carries no business id, so a
retried timeout may reach the same receivers twice; each of them has a standing grant, so no
consent is exceeded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from server.consent.templates import TemplateRegistry
from server.consent.views import USER_ID_PATTERN
from server.platforms.top import WORKCORE_BATCH_SEND
from server.sending.channels.base import ChannelPlatforms, ChannelSpec, PreparedSend
from server.sending.channels.top_apps import TopAppName, TopChannel, TopNumber, require_top_app
from server.web.json_body import parse_model
from storage.models import ConsentChannel, TemplateKind

NAME = "workcore_batch"
MAX_RECEIVERS = 1000  # Subgate's own bound; the platform's is not documented
Receiver = Annotated[str, Field(pattern=USER_ID_PATTERN)]
Short = Annotated[str, Field(min_length=1, max_length=256)]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
JsonScalar = StrictStr | StrictInt | FiniteFloat | StrictBool


class WorkcoreBatchSend(BaseModel):
    """One message to the receivers (account ids) who opted in to ``action``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["workcore_batch"]
    top_app: TopAppName
    action: str = Field(
        pattern=USER_ID_PATTERN, description="The message template's name; the consent template."
    )
    receivers: list[Receiver] = Field(min_length=1, max_length=MAX_RECEIVERS)
    json_data: dict[str, JsonScalar] = Field(
        default_factory=dict, max_length=100, description="The template's variables."
    )
    resource_url: str = Field(default="", max_length=2048, description="Empty: no link.")
    resource_id: Short | None = None
    event_type: Short | None = None
    source: Short | None = None
    sender: TopNumber | None = None

    @model_validator(mode="after")
    def _unique_receivers(self) -> Self:
        if len(set(self.receivers)) != len(self.receivers):
            raise ValueError("receivers must not repeat an account id")
        return self


class WorkcoreBatchChannel(TopChannel):
    name = NAME
    method = WORKCORE_BATCH_SEND

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        send = parse_model(WorkcoreBatchSend, body)
        require_top_app(self._top_apps, send.top_app)
        message = {
            "json_data": _compact(send.json_data),
            "resource_url": send.resource_url,
            "event_type": send.event_type,
            "action": send.action,
            "source": send.source,
            "resource_id": send.resource_id,
            "sender": send.sender,
        }
        return PreparedSend(
            user_id=send.receivers[0],
            template_id=send.action,
            kind=TemplateKind.LONG_TERM,  # an opt-in is a standing grant (no credits)
            payload={
                "top_app": send.top_app,
                "message": {k: v for k, v in message.items() if v is not None},
            },
            recipients=tuple(send.receivers),
            consent_mode="split",
            ledger_channel=ConsentChannel.WORKCORE.value,
        )

    def call_params(self, payload: Mapping[str, Any], recipients: Sequence[str]) -> dict[str, Any]:
        return {"batch_message_d_t_o": batch_message(payload, recipients)}


def batch_message(payload: Mapping[str, Any], recipients: Sequence[str]) -> dict[str, Any]:
    """``batch_message_d_t_o`` in the seed's field order, ``receiver`` the allowed ones."""
    fields = dict(payload["message"])
    fields["receiver"] = _compact(list(recipients))
    order = ("json_data", "resource_url", "event_type", "action", "receiver", "source")
    ordered = {name: fields[name] for name in order if name in fields}
    return ordered | {name: value for name, value in fields.items() if name not in ordered}


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _build(platforms: ChannelPlatforms) -> WorkcoreBatchChannel:
    return WorkcoreBatchChannel(platforms.top, platforms.top_apps)


SPEC = ChannelSpec(NAME, WorkcoreBatchSend, _build)
