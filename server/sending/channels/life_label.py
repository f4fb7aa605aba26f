"""``life_label``: a life-account label send, ``POST /v3/alipay/open/public/message/label/send``.

The platform picks the audience (users carrying the labels), so there is no per-user consent
check (``consent_mode`` ``none``); the message's ledger key is ``label:<digest of the filter>``,
template ``label_send``, which keeps every label send in the ledger with its spend and refund.

The platform's stated limits (docs/sending.md) shape the answer:
- at most ``label_sends_per_week`` (default 5) calls per app per rolling 7 days: the next one is
  refused with 429 ``weekly_limit`` and ``retry_at``, and nothing is sent;
- each user receives at most one group or label message a week: the answer always warns that
  delivery is not per-user guaranteed;
- label data is cached for a day: the answer warns when any life-account unfollow of the app was
  recorded in the last 24 hours, since that user may still receive it.

Never retried after a transient answer: the call has no idempotency key, so a retry could be a
second delivery and spends a weekly call. Such a message is ``unknown`` (the quota stays used);
only a failure to reach the gateway at all is retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.errors import AppNotFound, AppNotReady
from server.platforms.alipay_v3 import LABEL_SEND_PATH, AlipayV3Client
from server.platforms.calls import CallOutcome, CallResult
from server.sending.channels.base import (
    ChannelPlatforms,
    ChannelSpec,
    PreparedSend,
    RecentActivityWarning,
)
from server.web.json_body import parse_model
from storage.models import WEEK_SECONDS, ConsentAction, ConsentChannel, TemplateKind

NAME = "life_label"
LEDGER_TEMPLATE = "label_send"
MAX_ARTICLES = 6
MAX_LABEL_VALUES = 100  # Subgate's own bound; the platform's is not documented
NOT_PER_USER = (
    "label sends are not delivered per user: each user receives at most one group or label "
    "message a week, so a user who already got one this week does not get this one; delivery "
    "takes from a few minutes to about 30 minutes"
)
RECENT_UNFOLLOW = (
    "a life-account unfollow was recorded in the last 24 hours: label data is cached for a day, "
    "so a user who unfollowed recently may still receive this message"
)
_TEMPLATE = re.compile(r"^\$\{(a|b)\}(?:\s+(?:and|or)\s+\$\{(a|b)\})?$")

Value = Annotated[str, Field(min_length=1, max_length=128)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelCondition(_Strict):
    """One variable of the filter: ``column_name op values``."""

    column_name: str = Field(
        pattern=r"^[A-Za-z0-9_]{1,64}$",
        description="label_id_list for the merchant's own labels; Alipay's open labels differ.",
    )
    op: Literal["=", "!=", "in"]
    values: list[Value] = Field(min_length=1, max_length=MAX_LABEL_VALUES)

    @model_validator(mode="after")
    def _one_value_to_compare(self) -> Self:
        if self.op != "in" and len(self.values) != 1:
            raise ValueError(f"op {self.op!r} compares with exactly one value; use 'in' for more")
        return self


class LabelContext(_Strict):
    a: LabelCondition
    b: LabelCondition | None = None


class LabelFilter(_Strict):
    template: str = Field(
        max_length=64, description="${a}, or two variables joined by and / or: ${a} and ${b}"
    )
    context: LabelContext

    @model_validator(mode="after")
    def _variables_match(self) -> Self:
        match = _TEMPLATE.match(self.template)
        if match is None:
            raise ValueError("template must be ${a}, or ${a} and|or ${b} (at most 2 variables)")
        used = [name for name in match.groups() if name is not None]
        defined = ["a"] + (["b"] if self.context.b is not None else [])
        if len(set(used)) != len(used) or sorted(used) != defined:
            raise ValueError("template must use each variable of context exactly once")
        return self


class Text(_Strict):
    title: Title
    content: str = Field(min_length=1, max_length=4000)


class Article(_Strict):
    title: Title
    desc: str | None = Field(default=None, max_length=1000)
    image_url: Url | None = None
    url: Url | None = None
    action_name: str | None = Field(default=None, min_length=1, max_length=64)


class Material(_Strict):
    msg_type: Literal["text", "image-text"]
    text: Text | None = None
    articles: list[Article] | None = Field(default=None, min_length=1, max_length=MAX_ARTICLES)

    @model_validator(mode="after")
    def _content_matches_type(self) -> Self:
        if self.msg_type == "text" and (self.text is None or self.articles is not None):
            raise ValueError("msg_type text needs text and no articles")
        if self.msg_type == "image-text":
            if self.articles is None or self.text is not None:
                raise ValueError("msg_type image-text needs articles and no text")
            if len(self.articles) > 1 and self.articles[0].image_url is None:
                raise ValueError("the first article of several needs an image_url")
        return self


class LifeLabelSend(_Strict):
    """A label send to the life account's followers carrying the filter's labels."""

    channel: Literal["life_label"]
    filter: LabelFilter
    material: Material


def ledger_user_id(label_filter: Mapping[str, Any]) -> str:
    """The message's ledger key: ``label:`` and 32 hex digits of the filter's canonical JSON."""
    canonical = json.dumps(label_filter, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "label:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class LifeLabelChannel:
    name = NAME
    retry_transient = False  # no idempotency key and a weekly quota: never risk a second call

    def __init__(self, client: AlipayV3Client, credentials: Mapping[str, AppCredentials]) -> None:
        self._client = client
        self._credentials = credentials

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        send = parse_model(LifeLabelSend, body)
        app = self._credentials.get(app_id)
        if app is None:
            raise AppNotFound("no such app is configured")
        if app.app_private_key is None:  # refused before it could use up a weekly send
            raise AppNotReady(f"app {app_id} has no app_private_key to sign label sends with")
        payload = {
            "filter": send.filter.model_dump(exclude_none=True),
            "material": send.material.model_dump(exclude_none=True),
        }
        key = ledger_user_id(payload["filter"])
        return PreparedSend(
            user_id=key,
            template_id=LEDGER_TEMPLATE,
            kind=TemplateKind.UNKNOWN,
            payload=payload,
            consent_mode="none",
            weekly_limit=app.label_sends_per_week,
            limit_window_seconds=WEEK_SECONDS,
            warnings=(NOT_PER_USER,),
            warn_if_recent=(
                RecentActivityWarning(
                    channel=ConsentChannel.LIFE_ACCOUNT,
                    action=ConsentAction.UNFOLLOW,
                    within=timedelta(hours=24),
                    warning=RECENT_UNFOLLOW,
                ),
            ),
        )

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        try:
            return await self._client.call(app, "POST", LABEL_SEND_PATH, payload)
        except AppNotReady as error:  # nothing was sent: a definite failure
            return CallResult(CallOutcome.REJECTED, error=str(error))


def _build(platforms: ChannelPlatforms) -> LifeLabelChannel:
    return LifeLabelChannel(platforms.alipay_v3, platforms.credentials)


SPEC = ChannelSpec(NAME, LifeLabelSend, _build)
