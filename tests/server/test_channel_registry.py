"""One channel registry: a send channel is one module and one line in
``server.sending.channels.registry.SEND_CHANNELS``; everything else is derived from it.

A fifth channel, defined here as its own module would define it, joins the request union and
the channel table by being added to the tuple, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from server.api.messages import SendRequest
from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.platforms.alipay_classic import AlipayClient
from server.platforms.alipay_v3 import AlipayV3Client
from server.platforms.calls import CallOutcome, CallResult
from server.platforms.top import TopClient
from server.runtime.clock import utc_now
from server.sending.channels.base import ChannelPlatforms, ChannelSpec, PreparedSend
from server.sending.channels.registry import SEND_CHANNELS, build_send_channels, send_body
from storage.models import TemplateKind


class EchoSend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["echo"]
    user_id: str
    text: str


class EchoChannel:
    name = "echo"
    retry_transient = True

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        send = EchoSend.model_validate(body)
        return PreparedSend(send.user_id, "echo", TemplateKind.LONG_TERM, {"text": send.text})

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        return CallResult(CallOutcome.SUCCESS)


ECHO = ChannelSpec("echo", EchoSend, lambda platforms: EchoChannel())


@pytest.fixture
async def platforms() -> Any:
    async with aiohttp.ClientSession() as session:
        yield ChannelPlatforms(
            AlipayClient(session, utc_now, 1.0),
            AlipayV3Client(session, utc_now, 1.0),
            TopClient(session, utc_now, 1.0),
            credentials={},
            top_apps={},
        )


def test_the_send_request_is_the_union_of_the_registered_bodies() -> None:
    schema = SendRequest.model_json_schema()
    names = {member["$ref"].rsplit("/", 1)[-1] for member in schema["oneOf"]}

    assert names == {spec.request.__name__ for spec in SEND_CHANNELS}
    assert set(schema["discriminator"]["mapping"]) == {spec.name for spec in SEND_CHANNELS}


async def test_every_registered_channel_is_built_under_its_name(
    platforms: ChannelPlatforms,
) -> None:
    channels = build_send_channels(platforms)

    assert list(channels) == [spec.name for spec in SEND_CHANNELS]
    assert all(channel.name == name for name, channel in channels.items())


async def test_a_fifth_channel_is_one_spec_added_to_the_table(platforms: ChannelPlatforms) -> None:
    table = (*SEND_CHANNELS, ECHO)
    request = RootModel[send_body(table)]  # type: ignore[misc,valid-type]

    body = request.model_validate({"channel": "echo", "user_id": "2088", "text": "hi"}).root
    channels = build_send_channels(platforms, table)

    assert isinstance(body, EchoSend)
    assert isinstance(channels["echo"], EchoChannel)
    assert "EchoSend" in str(request.model_json_schema())
    with pytest.raises(ValidationError):
        RootModel[send_body(SEND_CHANNELS)].model_validate({"channel": "echo"})  # type: ignore[misc]
