"""Bearer tokens on every /v1 route: 401 without a known token, 403 outside its apps or scopes,
404 for an unconfigured app; a refused write writes nothing; tokens never appear in answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.api_client import (
    ADMIN_TOKEN,
    ALL_TOKENS,
    ONE_TIME,
    OTHER_APP_TOKEN,
    READER_TOKEN,
    SEND_ONLY_TOKEN,
    USER,
    WRITER_TOKEN,
    Answer,
    Api,
    ledger_rows,
    new_key,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, OTHER_APP_ID, StartGateway

UNCONFIGURED_APP = "2021009999999999"


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path)


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str  # with {app}
    body: Any
    scope: str


OPERATIONS = [
    Operation(
        "report",
        "POST",
        "/v1/apps/{app}/users/" + USER + "/subscribe-results",
        success_report(ONE_TIME),
        "write",
    ),
    Operation(
        "consent",
        "PUT",
        "/v1/apps/{app}/users/" + USER + "/consents/jym_push/" + ONE_TIME,
        {"status": "granted", "evidence": "opted in at checkout"},
        "write",
    ),
    Operation("list", "GET", "/v1/apps/{app}/users/" + USER + "/subscriptions", None, "read"),
    Operation(
        "one", "GET", "/v1/apps/{app}/users/" + USER + "/subscriptions/" + ONE_TIME, None, "read"
    ),
    Operation(
        "history",
        "GET",
        "/v1/apps/{app}/users/" + USER + "/subscriptions/" + ONE_TIME + "/history",
        None,
        "read",
    ),
    Operation(
        "lookup",
        "POST",
        "/v1/apps/{app}/subscriptions:lookup",
        {"template_id": ONE_TIME, "user_ids": [USER]},
        "read",
    ),
]
WRITES = [op for op in OPERATIONS if op.scope == "write"]
READS = [op for op in OPERATIONS if op.scope == "read"]


def ids(ops: list[Operation]) -> list[str]:
    return [op.name for op in ops]


async def call(
    api: Api,
    operation: Operation,
    *,
    app: str = APP_ID,
    authorization: str | None = None,
    body: Any = None,
) -> Answer:
    headers = {"Idempotency-Key": new_key()}
    if authorization is not None:
        headers["Authorization"] = authorization
    return await api.request(
        operation.method,
        operation.path.format(app=app),
        json_body=operation.body if body is None else body,
        headers=headers,
    )


UNAUTHORIZED = [
    pytest.param(None, id="no-header"),
    pytest.param("", id="empty-header"),
    pytest.param(f"Basic {ADMIN_TOKEN}", id="basic-scheme"),
    pytest.param(f"Token {ADMIN_TOKEN}", id="token-scheme"),
    pytest.param(ADMIN_TOKEN, id="no-scheme"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param("Bearer    ", id="bearer-blank"),
    pytest.param("Bearer not-a-configured-token-1234", id="unknown-token"),
    pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", id="prefix-of-a-token"),
    pytest.param(f"Bearer {ADMIN_TOKEN}x", id="token-plus-one"),
    pytest.param(f"Bearer {ADMIN_TOKEN.upper()}", id="token-in-upper-case"),
    pytest.param("Bearer 管理员令牌0123456789", id="non-ascii-token"),
]


@pytest.mark.parametrize("authorization", UNAUTHORIZED)
async def test_a_request_without_a_known_bearer_token_is_unauthorized_on_every_route(
    api: Api, authorization: str | None
) -> None:
    before = ledger_rows(api.gateway)

    answers = {
        op.name: await call(api.as_token(None), op, authorization=authorization)
        for op in OPERATIONS
    }

    assert {name: (a.status, a.code) for name, a in answers.items()} == {
        op.name: (401, "unauthorized") for op in OPERATIONS
    }
    assert ledger_rows(api.gateway) == before


async def test_an_authorization_header_that_is_not_utf8_is_unauthorized(api: Api) -> None:
    server = api.gateway.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"GET /v1/apps/{APP_ID}/users/{USER}/subscriptions HTTP/1.1\r\n".encode()
        + b"Host: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\xe4\xb8\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b'"code": "unauthorized"' in body


@pytest.mark.parametrize("operation", OPERATIONS, ids=ids(OPERATIONS))
async def test_a_token_for_another_app_is_forbidden(api: Api, operation: Operation) -> None:
    before = ledger_rows(api.gateway)

    answer = await call(api.as_token(OTHER_APP_TOKEN), operation, app=APP_ID)

    assert (answer.status, answer.code) == (403, "forbidden")
    assert ledger_rows(api.gateway) == before


@pytest.mark.parametrize("operation", WRITES, ids=ids(WRITES))
async def test_a_read_token_may_not_write(api: Api, operation: Operation) -> None:
    before = ledger_rows(api.gateway)

    answer = await call(api.as_token(READER_TOKEN), operation)

    assert (answer.status, answer.code) == (403, "forbidden")
    assert "write" in answer.body["error"]["message"]
    assert ledger_rows(api.gateway) == before


@pytest.mark.parametrize("operation", WRITES, ids=ids(WRITES))
async def test_a_read_token_is_refused_before_its_body_is_read(
    api: Api, operation: Operation
) -> None:
    answer = await api.as_token(READER_TOKEN).request(
        operation.method,
        operation.path.format(app=APP_ID),
        data=b"{not json",
        headers={"Idempotency-Key": new_key()},
    )

    assert (answer.status, answer.code) == (403, "forbidden")


@pytest.mark.parametrize("operation", READS, ids=ids(READS))
async def test_a_read_token_may_read(api: Api, operation: Operation) -> None:
    answer = await call(api.as_token(READER_TOKEN), operation)

    assert answer.status == 200, answer.text


@pytest.mark.parametrize("operation", OPERATIONS, ids=ids(OPERATIONS))
async def test_a_send_only_token_may_neither_read_nor_write(api: Api, operation: Operation) -> None:
    answer = await call(api.as_token(SEND_ONLY_TOKEN), operation)

    assert (answer.status, answer.code) == (403, "forbidden")


@pytest.mark.parametrize("operation", OPERATIONS, ids=ids(OPERATIONS))
async def test_a_token_with_the_app_and_scopes_may_call_every_operation(
    api: Api, operation: Operation
) -> None:
    answer = await call(api.as_token(WRITER_TOKEN), operation)

    assert answer.status == 200, answer.text


@pytest.mark.parametrize("app", [APP_ID, OTHER_APP_ID])
@pytest.mark.parametrize("operation", OPERATIONS, ids=ids(OPERATIONS))
async def test_a_star_token_works_for_every_configured_app(
    api: Api, operation: Operation, app: str
) -> None:
    answer = await call(api.as_token(ADMIN_TOKEN), operation, app=app)

    assert answer.status == 200, answer.text


async def test_the_scheme_name_is_case_insensitive(api: Api) -> None:
    answer = await call(api.as_token(None), READS[0], authorization=f"bearer {READER_TOKEN}")

    assert answer.status == 200


async def test_a_star_token_writes_only_to_the_app_in_the_path(api: Api) -> None:
    await call(api.as_token(ADMIN_TOKEN), WRITES[0], app=OTHER_APP_ID)

    assert await api.store.consent_events(APP_ID) == []
    assert [e.app_id for e in await api.store.consent_events(OTHER_APP_ID)] == [OTHER_APP_ID]


@pytest.mark.parametrize("operation", OPERATIONS, ids=ids(OPERATIONS))
async def test_an_unconfigured_app_with_a_star_token_is_app_not_found(
    api: Api, operation: Operation
) -> None:
    answer = await call(api.as_token(ADMIN_TOKEN), operation, app=UNCONFIGURED_APP)

    assert (answer.status, answer.code) == (404, "app_not_found")
    assert ledger_rows(api.gateway)["subscribe_reports"] == []
    assert await api.store.consent_events(UNCONFIGURED_APP) == []


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        (None, 401, "unauthorized"),
        (WRITER_TOKEN, 403, "forbidden"),
        (ADMIN_TOKEN, 404, "app_not_found"),
    ],
)
async def test_an_unconfigured_app_is_revealed_only_to_a_star_token(
    api: Api, token: str | None, status: int, code: str
) -> None:
    answer = await call(api.as_token(token), OPERATIONS[0], app=UNCONFIGURED_APP)

    assert (answer.status, answer.code) == (status, code)


async def test_no_answer_ever_contains_a_token(api: Api) -> None:
    answers: list[Answer] = []
    for token in (*ALL_TOKENS, None, "Bearer-looking-but-unknown-0000"):
        client = api.as_token(token)
        for operation in OPERATIONS:
            for app in (APP_ID, OTHER_APP_ID, UNCONFIGURED_APP):
                answers.append(await call(client, operation, app=app))
        answers.append(await client.request("GET", "/openapi.json"))
        answers.append(await client.request("GET", "/v1/nowhere"))

    assert {a.status for a in answers} >= {200, 401, 403, 404}
    for answer in answers:
        exposed = answer.text + "".join(f"{k}: {v}" for k, v in answer.headers.items())
        assert not [token for token in ALL_TOKENS if token in exposed]
