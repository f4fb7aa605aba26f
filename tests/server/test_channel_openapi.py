"""The send route's document covers every channel: each body is a member of one request schema
(discriminated on ``channel``), and the real answers of each channel validate as documented."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.server.channel_fixtures import (
    ACTION,
    JYM_TEMPLATE,
    JYM_USER,
    Channels,
    jym_body,
    label_body,
    running_channels,
    workcore_body,
)
from tests.server.conftest import StartGateway
from tests.server.fake_top import error
from tests.server.send_fixtures import Answer, one_time_body
from tests.server.test_openapi import documented_codes, validator

SEND = "/v1/apps/{app_id}/messages"
GET = "/v1/apps/{app_id}/messages/{message_id}"


@pytest.fixture
async def env(
    monkeypatch: pytest.MonkeyPatch, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[Channels]:
    async with running_channels(monkeypatch, start_gateway, tmp_path) as channels:
        yield channels


async def document(env: Channels) -> dict[str, Any]:
    answer = await env.sending.request("GET", "/openapi.json")
    assert answer.status == 200
    assert isinstance(answer.body, dict)
    return answer.body


def request_schema(doc: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][SEND]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


async def test_the_send_body_is_one_of_the_four_channels(env: Channels) -> None:
    doc = await document(env)
    name = request_schema(doc)["$ref"].rsplit("/", 1)[1]

    union = doc["components"]["schemas"][name]

    members = {ref["$ref"].rsplit("/", 1)[1] for ref in union["oneOf"]}
    assert members == {"MiniTemplateSend", "LifeLabelSend", "JymPushSend", "WorkcoreBatchSend"}
    assert union["discriminator"]["propertyName"] == "channel"
    assert set(union["discriminator"]["mapping"]) == {
        "mini_template",
        "life_label",
        "jym_push",
        "workcore_batch",
    }


@pytest.mark.parametrize(
    "body",
    [
        one_time_body(),
        label_body(),
        label_body(material={"msg_type": "image-text", "articles": [{"title": "t"}]}),
        jym_body(),
        workcore_body(),
    ],
    ids=["mini_template", "life_label-text", "life_label-image-text", "jym_push", "workcore"],
)
async def test_every_channels_body_matches_the_request_schema(
    env: Channels, body: dict[str, Any]
) -> None:
    doc = await document(env)

    validator(doc, request_schema(doc)).validate(body)


@pytest.mark.parametrize(
    "body",
    [
        jym_body(user_id=str(JYM_USER)),
        workcore_body(receivers=[]),
        label_body(material={"msg_type": "image-text", "articles": [{"title": "t"}] * 7}),
        {**jym_body(), "channel": "sms"},
    ],
    ids=["jym-user-id-string", "workcore-no-receivers", "seven-articles", "unknown-channel"],
)
async def test_the_schema_refuses_what_the_route_refuses(
    env: Channels, body: dict[str, Any]
) -> None:
    doc = await document(env)

    assert list(validator(doc, request_schema(doc)).iter_errors(body))


Exchange = Callable[[Channels], Awaitable[Answer]]


async def label_sent(env: Channels) -> Answer:
    return await env.send(label_body())


async def label_weekly_limit(env: Channels) -> Answer:
    for _ in range(5):
        await env.send(label_body())
    return await env.send(label_body())


async def jym_queued(env: Channels) -> Answer:
    await env.consent("jym_push", str(JYM_TEMPLATE), str(JYM_USER))
    env.top.script(error(15, "Remote service error", "isp.top-remote-connection-timeout"))
    return await env.send(jym_body())


async def jym_unknown_top_app(env: Channels) -> Answer:
    return await env.send(jym_body(top_app="other"))


async def workcore_split(env: Channels) -> Answer:
    await env.consent("workcore", ACTION, "1001")
    return await env.send(workcore_body())


async def workcore_no_consent(env: Channels) -> Answer:
    return await env.send(workcore_body())


async def workcore_read_back(env: Channels) -> Answer:
    sent = await workcore_split(env)
    return await env.message(sent.body["message_id"])


EXCHANGES: list[tuple[str, Exchange, int]] = [
    (SEND, label_sent, 200),
    (SEND, label_weekly_limit, 429),
    (SEND, jym_queued, 202),
    (SEND, jym_unknown_top_app, 422),
    (SEND, workcore_split, 200),
    (SEND, workcore_no_consent, 403),
    (GET, workcore_read_back, 200),
]


@pytest.mark.parametrize(
    ("path", "exchange", "status"), EXCHANGES, ids=[e.__name__ for _, e, _ in EXCHANGES]
)
async def test_each_channels_answers_validate_against_the_document(
    env: Channels, path: str, exchange: Exchange, status: int
) -> None:
    doc = await document(env)

    answer = await exchange(env)

    assert answer.status == status, answer.body
    operation = doc["paths"][path]["post" if path == SEND else "get"]
    response = operation["responses"][str(status)]
    validator(doc, response["content"]["application/json"]["schema"]).validate(answer.body)
    if status >= 400:
        assert answer.code in documented_codes(response)
