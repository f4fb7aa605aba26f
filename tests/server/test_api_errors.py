"""Every bad input to a /v1 route: the documented status and code in the one error shape, and
nothing written to the SQLite file, not even partly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.api_client import (
    ONE_TIME,
    USER,
    Answer,
    Api,
    ledger_rows,
    new_key,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, StartGateway

REPORT = f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results"
CONSENT = f"/v1/apps/{APP_ID}/users/{USER}/consents/jym_push/{ONE_TIME}"
LOOKUP = f"/v1/apps/{APP_ID}/subscriptions:lookup"
ROUTES = {"report": ("POST", REPORT), "consent": ("PUT", CONSENT), "lookup": ("POST", LOOKUP)}
VALID: dict[str, dict[str, Any]] = {
    "report": success_report(ONE_TIME),
    "consent": {"status": "granted", "evidence": "signed up at the counter"},
    "lookup": {"template_id": ONE_TIME, "user_ids": [USER]},
}


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path)


async def send(
    api: Api,
    route: str,
    data: bytes,
    content_type: str = "application/json",
    chunked: bool = False,
) -> Answer:
    method, path = ROUTES[route]
    headers = {"Idempotency-Key": new_key()} if route == "report" else {}
    if not chunked:
        return await api.request(
            method, path, data=data, headers=headers, content_type=content_type
        )

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1024):
            yield data[start : start + 1024]

    assert api.token is not None
    response = await api.gateway.client.request(
        method,
        path,
        data=pieces(),
        headers={
            **headers,
            "Authorization": f"Bearer {api.token}",
            "Content-Type": content_type,
        },
    )
    text = await response.text()
    return Answer(response.status, json.loads(text), response.headers, text)


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert (answer.status, answer.code) == (status, code), answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.body) == {"error"}
    assert set(answer.body["error"]) == {"code", "message"}
    assert isinstance(answer.body["error"]["message"], str) and answer.body["error"]["message"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_extra(route: str, raw: str) -> bytes:
    """The route's valid body with one more member whose JSON text is ``raw``."""
    text = json.dumps(VALID[route], ensure_ascii=False)
    return (text[:-1] + f', "extra_member": {raw}}}').encode("utf-8")


MALFORMED: list[Any] = [
    pytest.param(b"", id="empty"),
    pytest.param(b'{"status": granted}', id="not-json"),
    pytest.param(b"{} {}", id="two-documents"),
    pytest.param(b'{"status": "granted"', id="truncated"),
    pytest.param('{"evidence": "caf\xe9"}'.encode("latin-1"), id="invalid-utf8"),
    pytest.param(json.dumps(VALID["consent"]).encode("utf-16"), id="utf16"),
    pytest.param(b'{"status": "granted", "status": "revoked"}', id="duplicate-key"),
    pytest.param(b'{"a": {"b": 1, "b": 2}}', id="duplicate-nested-key"),
    pytest.param(b'{"x": NaN}', id="nan"),
    pytest.param(b'{"x": -Infinity}', id="infinity"),
    pytest.param(b'{"x": "\\ud800"}', id="lone-surrogate"),
    pytest.param(b'{"x": ' + b"1" * 5000 + b"}", id="5000-digit-number"),
    pytest.param(('{"x": ' + nested(10_000) + "}").encode(), id="nested-10000-deep"),
    pytest.param(nested(10_000).encode(), id="top-level-nested-10000"),
]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("data", MALFORMED)
async def test_a_body_that_is_not_strict_utf8_json_is_invalid_json_and_writes_nothing(
    api: Api, route: str, data: bytes
) -> None:
    before = ledger_rows(api.gateway)

    answer = await send(api, route, data)

    assert_error(answer, 400, "invalid_json")
    assert ledger_rows(api.gateway) == before


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(nested(300), id="array-300-deep"),
        pytest.param('{"a": ' * 300 + "1" + "}" * 300, id="object-300-deep"),
        pytest.param('"\\udc00 in a member"', id="lone-surrogate"),
        pytest.param('{"\\ud83d": 1}', id="lone-surrogate-key"),
    ],
)
async def test_a_valid_body_carrying_a_deeply_nested_or_unpaired_member_is_invalid_json(
    api: Api, route: str, raw: str
) -> None:
    before = ledger_rows(api.gateway)

    answer = await send(api, route, with_extra(route, raw))

    assert_error(answer, 400, "invalid_json")
    assert ledger_rows(api.gateway) == before


async def test_a_paired_surrogate_escape_is_ordinary_unicode(api: Api) -> None:
    body = json.dumps({"status": "granted", "evidence": "\U0001f44d at the counter"})
    assert "\\ud83d\\udc4d" in body

    answer = await send(api, "consent", body.encode())

    assert answer.status == 200, answer.text
    [event] = await api.store.consent_events(APP_ID)
    assert event.evidence == "\U0001f44d at the counter"


WRONG: list[Any] = [
    # subscribe-results: the callback object's own fields have types
    pytest.param("report", [success_report(ONE_TIME)], id="report-array"),
    pytest.param("report", "subscribe", id="report-string"),
    pytest.param("report", None, id="report-null"),
    pytest.param("report", {**success_report(ONE_TIME), "result": []}, id="report-result-list"),
    pytest.param(
        "report",
        {**success_report(ONE_TIME), "result": {"currentSubscribedEntityIds": ONE_TIME}},
        id="report-ids-not-a-list",
    ),
    pytest.param(
        "report",
        {**success_report(), "result": {"currentSubscribedEntityIds": [7]}},
        id="report-id-a-number",
    ),
    pytest.param("report", {**success_report(ONE_TIME), "show": "false"}, id="report-show-str"),
    pytest.param("report", {**success_report(ONE_TIME), "keep": 1}, id="report-keep-int"),
    pytest.param("report", {**success_report(ONE_TIME), "success": "true"}, id="report-success-s"),
    pytest.param("report", {**success_report(ONE_TIME), "errorCode": [11]}, id="report-code-list"),
    pytest.param("report", {**success_report(ONE_TIME), "behavior": 1}, id="report-behavior-int"),
    pytest.param(
        "report", {**success_report(ONE_TIME), "errorMessage": "x" * 501}, id="report-msg-long"
    ),
    pytest.param("report", {**success_report(ONE_TIME), "reported_at": True}, id="report-at-bool"),
    # consents
    pytest.param("consent", {"status": "yes", "evidence": "e"}, id="consent-status-unknown"),
    pytest.param("consent", {"status": True, "evidence": "e"}, id="consent-status-bool"),
    pytest.param("consent", {"status": "granted"}, id="consent-no-evidence"),
    pytest.param("consent", {"status": "granted", "evidence": ""}, id="consent-empty-evidence"),
    pytest.param("consent", {"status": "granted", "evidence": 5}, id="consent-evidence-int"),
    pytest.param(
        "consent", {"status": "granted", "evidence": "e" * 501}, id="consent-evidence-long"
    ),
    pytest.param(
        "consent",
        {"status": "granted", "evidence": "e", "channel": "mini_template"},
        id="consent-extra-field",
    ),
    pytest.param(
        "consent", {"status": "granted", "evidence": "e", "occurred_at": "soon"}, id="consent-at"
    ),
    pytest.param("consent", [], id="consent-array"),
    # lookup
    pytest.param("lookup", {"template_id": ONE_TIME, "user_ids": USER}, id="lookup-ids-str"),
    pytest.param("lookup", {"template_id": ONE_TIME, "user_ids": []}, id="lookup-no-ids"),
    pytest.param("lookup", {"template_id": ONE_TIME, "user_ids": [2088]}, id="lookup-id-int"),
    pytest.param("lookup", {"user_ids": [USER]}, id="lookup-no-template"),
    pytest.param("lookup", {"template_id": "", "user_ids": [USER]}, id="lookup-empty-template"),
    pytest.param(
        "lookup", {"template_id": ONE_TIME, "user_ids": [USER], "page": 2}, id="lookup-extra"
    ),
    pytest.param(
        "lookup", {"template_id": ONE_TIME, "user_ids": [USER], "channel": "sms"}, id="lookup-chan"
    ),
]


@pytest.mark.parametrize(("route", "body"), WRONG)
async def test_well_formed_json_of_the_wrong_shape_is_a_validation_failure(
    api: Api, route: str, body: Any
) -> None:
    before = ledger_rows(api.gateway)

    answer = await send(api, route, json.dumps(body).encode())

    assert_error(answer, 422, "validation_failed")
    assert ledger_rows(api.gateway) == before


async def test_a_validation_failure_names_the_field_but_never_echoes_its_value(api: Api) -> None:
    secret = "2088SECRET0000001"
    body = {"template_id": ONE_TIME, "user_ids": [USER, {"phone": secret}]}

    answer = await send(api, "lookup", json.dumps(body).encode())

    assert_error(answer, 422, "validation_failed")
    assert "user_ids.1" in answer.body["error"]["message"]
    assert secret not in answer.text


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "application/jsonp",
        "multipart/form-data; boundary=x",
    ],
)
async def test_a_body_that_is_not_declared_json_is_unsupported_and_writes_nothing(
    api: Api, route: str, content_type: str
) -> None:
    before = ledger_rows(api.gateway)

    answer = await send(api, route, json.dumps(VALID[route]).encode(), content_type)

    assert_error(answer, 415, "unsupported_media_type")
    assert ledger_rows(api.gateway) == before


@pytest.mark.parametrize("route", list(ROUTES))
async def test_json_with_a_charset_parameter_is_still_json(api: Api, route: str) -> None:
    answer = await send(
        api, route, json.dumps(VALID[route]).encode(), "application/json; charset=utf-8"
    )

    assert answer.status == 200, answer.text


@pytest.fixture
async def small_api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path, max_body_bytes=4096)


def padded(route: str, size: int) -> bytes:
    """The route's valid body, padded with spaces to exactly ``size`` bytes (still valid)."""
    data = json.dumps(VALID[route]).encode()
    return data + b" " * (size - len(data))


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_body_bytes_is_too_large_and_writes_nothing(
    small_api: Api, route: str, chunked: bool
) -> None:
    answer = await send(small_api, route, padded(route, 4097), chunked=chunked)

    assert_error(answer, 413, "too_large")
    assert ledger_rows(small_api.gateway)["subscribe_reports"] == []
    assert await small_api.store.consent_events(APP_ID) == []


@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_body_of_exactly_max_body_bytes_is_read(small_api: Api, route: str) -> None:
    answer = await send(small_api, route, padded(route, 4096))

    assert answer.status == 200, answer.text


BAD_IDS = [
    pytest.param("a b", id="space"),
    pytest.param("u" * 65, id="65-chars"),
    pytest.param("用户", id="non-ascii"),
    pytest.param("2088.1", id="dot"),
]


@pytest.mark.parametrize("user", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/apps/{app}/users/{user}/subscribe-results", VALID["report"]),
        ("PUT", "/v1/apps/{app}/users/{user}/consents/jym_push/T1", VALID["consent"]),
        ("GET", "/v1/apps/{app}/users/{user}/subscriptions", None),
        ("GET", "/v1/apps/{app}/users/{user}/subscriptions/T1", None),
        ("GET", "/v1/apps/{app}/users/{user}/subscriptions/T1/history", None),
    ],
    ids=["report", "consent", "list", "one", "history"],
)
async def test_a_user_id_outside_the_id_alphabet_is_a_validation_failure(
    api: Api, user: str, method: str, path: str, body: Any
) -> None:
    answer = await api.request(
        method,
        path.format(app=APP_ID, user=user.replace(" ", "%20")),
        json_body=body,
        headers={"Idempotency-Key": new_key()},
    )

    assert_error(answer, 422, "validation_failed")
    assert "user_id" in answer.body["error"]["message"]
    assert ledger_rows(api.gateway)["subscribe_reports"] == []
    assert await api.store.consent_events(APP_ID) == []


@pytest.mark.parametrize("template", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/apps/{app}/users/u1/consents/jym_push/{template}", VALID["consent"]),
        ("GET", "/v1/apps/{app}/users/u1/subscriptions/{template}", None),
        ("GET", "/v1/apps/{app}/users/u1/subscriptions/{template}/history", None),
    ],
    ids=["consent", "one", "history"],
)
async def test_a_template_id_outside_the_id_alphabet_is_a_validation_failure(
    api: Api, template: str, method: str, path: str, body: Any
) -> None:
    answer = await api.request(
        method,
        path.format(app=APP_ID, template=template.replace(" ", "%20")),
        json_body=body,
    )

    assert_error(answer, 422, "validation_failed")
    assert "template_id" in answer.body["error"]["message"]
    assert await api.store.consent_events(APP_ID) == []


async def test_an_unknown_channel_in_the_query_is_a_validation_failure(api: Api) -> None:
    answer = await api.subscription(ONE_TIME, channel="sms")

    assert_error(answer, 422, "validation_failed")
    assert "channel" in answer.body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nowhere"),
        ("GET", f"/v1/apps/{APP_ID}"),
        ("GET", f"/v1/apps/{APP_ID}/users/{USER}"),
        ("POST", f"/v1/apps/{APP_ID}/users/{USER}/subscribe-result"),
        ("GET", "/v2/openapi.json"),
    ],
)
async def test_an_unknown_route_is_a_json_not_found(api: Api, method: str, path: str) -> None:
    answer = await api.request(method, path)

    assert_error(answer, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", REPORT, "POST"),
        ("DELETE", f"/v1/apps/{APP_ID}/users/{USER}/subscriptions", "GET"),
        ("POST", f"/v1/apps/{APP_ID}/users/{USER}/subscriptions/{ONE_TIME}", "GET"),
        ("GET", CONSENT, "PUT"),
        ("PUT", LOOKUP, "POST"),
    ],
)
async def test_a_wrong_method_is_a_json_method_not_allowed_naming_the_allowed_one(
    api: Api, method: str, path: str, allowed: str
) -> None:
    answer = await api.request(method, path, json_body={} if method != "GET" else None)

    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers.get("Allow") == allowed
    assert await api.store.consent_events(APP_ID) == []
