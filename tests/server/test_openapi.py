"""GET /openapi.json is kept true: every /v1 route the app serves is in it, and real answers of
every operation (successes and errors) validate against its response schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from server.errors import STATUS_BY_CODE
from tests.server.api_client import (
    LONG_TERM,
    ONE_TIME,
    OTHER_APP_TOKEN,
    READER_TOKEN,
    SEED_FAIL,
    SEED_SUCCESS,
    USER,
    Answer,
    Api,
    new_key,
    platform_cancel,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, NOW, StartGateway

DOCUMENT_URI = "urn:subgate:openapi"
REPORT = "/v1/apps/{app_id}/users/{user_id}/subscribe-results"
CONSENT = "/v1/apps/{app_id}/users/{user_id}/consents/{channel}/{template_id}"
LIST = "/v1/apps/{app_id}/users/{user_id}/subscriptions"
ONE = "/v1/apps/{app_id}/users/{user_id}/subscriptions/{template_id}"
HISTORY = "/v1/apps/{app_id}/users/{user_id}/subscriptions/{template_id}/history"
LOOKUP = "/v1/apps/{app_id}/subscriptions:lookup"
CONSENT_OPERATIONS = {
    ("POST", REPORT),
    ("PUT", CONSENT),
    ("GET", LIST),
    ("GET", ONE),
    ("GET", HISTORY),
    ("POST", LOOKUP),
}


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path)


async def fetch_document(api: Api) -> dict[str, Any]:
    answer = await api.as_token(None).request("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert isinstance(answer.body, dict)
    return answer.body


def format_checker() -> FormatChecker:
    """jsonschema checks ``date-time`` only with an extra package; check RFC 3339 here."""
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_datetime(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            raise ValueError(f"not an RFC 3339 date-time: {value!r}")
        return datetime.fromisoformat(value).tzinfo is not None

    return checker


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of the document, resolving ``#/components/schemas/...``."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    ref = schema["$ref"]
    assert ref.startswith("#/components/schemas/")
    return Draft202012Validator(
        {"$ref": DOCUMENT_URI + ref}, registry=registry, format_checker=format_checker()
    )


def documented_codes(response: dict[str, Any]) -> set[str]:
    match = re.fullmatch(r"error codes: ([a-z_, ]+)", response["description"])
    assert match, response["description"]
    return set(match.group(1).split(", "))


async def test_the_document_is_openapi_3_1_and_needs_no_token(api: Api) -> None:
    document = await fetch_document(api)

    assert document["openapi"].startswith("3.1.")
    assert {"title", "version"} <= set(document["info"])
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert document["security"] == [{"bearer": []}]


async def test_every_v1_route_the_app_serves_is_documented_and_nothing_else(api: Api) -> None:
    document = await fetch_document(api)
    served = {
        (route.method, route.resource.canonical)
        for route in api.gateway.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/")
    }

    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }

    assert documented == served
    assert served >= CONSENT_OPERATIONS


async def test_every_path_parameter_and_the_idempotency_header_are_declared(api: Api) -> None:
    document = await fetch_document(api)

    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = {(p["in"], p["name"]) for p in operation["parameters"]}
            in_path = {("path", name) for name in re.findall(r"{(\w+)}", path)}
            assert {p for p in declared if p[0] == "path"} == in_path, (method, path)
            assert operation["operationId"] and operation["summary"]
    [report] = document["paths"][REPORT].values()
    idempotency = {"in": "header", "name": "Idempotency-Key", "required": True}
    assert idempotency | {"schema": {"type": "string"}} in report["parameters"]


async def test_every_component_schema_is_a_valid_2020_12_schema(api: Api) -> None:
    document = await fetch_document(api)

    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


async def test_every_error_code_in_the_document_has_that_status_in_the_code_table(
    api: Api,
) -> None:
    document = await fetch_document(api)
    listed: set[tuple[str, int]] = set()

    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}
                listed |= {(code, int(status)) for code in documented_codes(response)}

    assert {(code, STATUS_BY_CODE.get(code)) for code, _ in listed} == listed
    assert {code for code, _ in listed} >= {
        "unauthorized",
        "forbidden",
        "app_not_found",
        "validation_failed",
        "invalid_json",
        "idempotency_key_required",
        "idempotency_conflict",
        "invalid_report",
        "channel_not_opt_in",
        "too_large",
        "unsupported_media_type",
        "storage_unavailable",
        "internal_error",
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (REPORT, SEED_SUCCESS),
        (REPORT, SEED_FAIL),
        (REPORT, {**success_report(ONE_TIME), "reported_at": "2026-11-23T15:00:00+08:00"}),
        (CONSENT, {"status": "granted", "evidence": "form"}),
        (CONSENT, {"status": "revoked", "evidence": "call", "occurred_at": "2026-11-23T07:00:00Z"}),
        (LOOKUP, {"template_id": ONE_TIME, "user_ids": [USER]}),
        (LOOKUP, {"template_id": ONE_TIME, "user_ids": [USER], "channel": "jym_push"}),
    ],
)
async def test_the_request_bodies_the_api_accepts_match_the_request_schemas(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    document = await fetch_document(api)
    [operation] = document["paths"][path].values()
    schema = operation["requestBody"]["content"]["application/json"]["schema"]

    validator(document, schema).validate(body)


# --- Real answers of every operation against the document ---------------------------------------

Exchange = Callable[[Api], Awaitable[Answer]]
REPORT_URL = f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results"
CONSENT_URL = f"/v1/apps/{APP_ID}/users/{USER}/consents/jym_push/{ONE_TIME}"


async def report_accepted(api: Api) -> Answer:
    return await api.report(success_report(ONE_TIME, rejected=[LONG_TERM], keep=True))


async def report_not_applied(api: Api) -> Answer:
    return await api.report(SEED_FAIL)


async def report_without_key(api: Api) -> Answer:
    return await api.request("POST", REPORT_URL, json_body=SEED_SUCCESS)


async def report_not_json(api: Api) -> Answer:
    return await api.report(None, data=b"{,}")


async def report_conflict(api: Api) -> Answer:
    key = new_key()
    await api.report(SEED_SUCCESS, key=key)
    return await api.report(SEED_FAIL, key=key)


async def report_contradiction(api: Api) -> Answer:
    return await api.report({**success_report(ONE_TIME), ONE_TIME: "reject"})


async def report_too_large(api: Api) -> Answer:
    return await api.report(None, data=b" " * 70_000 + b"{}")


async def report_as_reader(api: Api) -> Answer:
    return await api.as_token(READER_TOKEN).report(SEED_SUCCESS)


async def report_unknown_app(api: Api) -> Answer:
    return await api.report(SEED_SUCCESS, app="2021009999999999")


async def consent_granted(api: Api) -> Answer:
    return await api.put_consent("jym_push", ONE_TIME, {"status": "granted", "evidence": "form"})


async def consent_not_opt_in(api: Api) -> Answer:
    return await api.put_consent("mini_template", ONE_TIME, {"status": "granted", "evidence": "x"})


async def consent_as_form(api: Api) -> Answer:
    return await api.request(
        "PUT", CONSENT_URL, data=b"status=granted", content_type="application/x-www-form-urlencoded"
    )


async def consent_unauthorized(api: Api) -> Answer:
    return await api.as_token(None).put_consent("jym_push", ONE_TIME, {"status": "granted"})


async def list_filled(api: Api) -> Answer:
    await api.report(success_report(ONE_TIME, LONG_TERM))
    await api.put_consent("workcore", "shift", {"status": "revoked", "evidence": "hr"})
    return await api.subscriptions()


async def list_unknown_user(api: Api) -> Answer:
    return await api.subscriptions("2088000000009999")


async def list_bad_user(api: Api) -> Answer:
    return await api.subscriptions("u" * 65)


async def list_other_app_token(api: Api) -> Answer:
    return await api.as_token(OTHER_APP_TOKEN).subscriptions()


async def one_known(api: Api) -> Answer:
    await api.report(success_report(ONE_TIME))
    return await api.subscription(ONE_TIME)


async def one_unknown(api: Api) -> Answer:
    return await api.subscription(LONG_TERM, "2088000000009999")


async def one_bad_channel(api: Api) -> Answer:
    return await api.subscription(ONE_TIME, channel="email")


async def history_filled(api: Api) -> Answer:
    await api.store.append_consent_events([platform_cancel(ONE_TIME, NOW)], NOW)
    await api.report({**success_report(ONE_TIME), "reported_at": "2026-11-23T07:00:00Z"})
    return await api.history(ONE_TIME)


async def history_unknown_app(api: Api) -> Answer:
    return await api.history(ONE_TIME, app="2021009999999999")


async def lookup_answered(api: Api) -> Answer:
    await api.report(success_report(ONE_TIME))
    return await api.lookup({"template_id": ONE_TIME, "user_ids": [USER, "2088000000009999"]})


async def lookup_too_many(api: Api) -> Answer:
    return await api.lookup({"template_id": ONE_TIME, "user_ids": [USER] * 1001})


async def lookup_duplicate_key(api: Api) -> Answer:
    return await api.request(
        "POST",
        f"/v1/apps/{APP_ID}/subscriptions:lookup",
        data=b'{"template_id": "a", "template_id": "b", "user_ids": ["u"]}',
    )


EXCHANGES: list[tuple[str, str, Exchange, int]] = [
    (REPORT, "post", report_accepted, 200),
    (REPORT, "post", report_not_applied, 200),
    (REPORT, "post", report_without_key, 400),
    (REPORT, "post", report_not_json, 400),
    (REPORT, "post", report_conflict, 409),
    (REPORT, "post", report_contradiction, 422),
    (REPORT, "post", report_too_large, 413),
    (REPORT, "post", report_as_reader, 403),
    (REPORT, "post", report_unknown_app, 404),
    (CONSENT, "put", consent_granted, 200),
    (CONSENT, "put", consent_not_opt_in, 422),
    (CONSENT, "put", consent_as_form, 415),
    (CONSENT, "put", consent_unauthorized, 401),
    (LIST, "get", list_filled, 200),
    (LIST, "get", list_unknown_user, 200),
    (LIST, "get", list_bad_user, 422),
    (LIST, "get", list_other_app_token, 403),
    (ONE, "get", one_known, 200),
    (ONE, "get", one_unknown, 200),
    (ONE, "get", one_bad_channel, 422),
    (HISTORY, "get", history_filled, 200),
    (HISTORY, "get", history_unknown_app, 404),
    (LOOKUP, "post", lookup_answered, 200),
    (LOOKUP, "post", lookup_too_many, 422),
    (LOOKUP, "post", lookup_duplicate_key, 400),
]


@pytest.mark.parametrize(
    ("path", "method", "exchange", "status"),
    EXCHANGES,
    ids=[exchange.__name__ for _, _, exchange, _ in EXCHANGES],
)
async def test_a_real_answer_validates_against_the_documented_response(
    api: Api, path: str, method: str, exchange: Exchange, status: int
) -> None:
    document = await fetch_document(api)

    answer = await exchange(api)

    assert answer.status == status, answer.text
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} answers {status}, which is undocumented"
    response = responses[str(status)]
    schema = response["content"]["application/json"]["schema"]
    validator(document, schema).validate(answer.body)
    if status != 200:
        assert answer.code in documented_codes(response)


def test_every_consent_operation_has_a_success_and_an_error_exchange() -> None:
    covered = {(method.upper(), path, status == 200) for path, method, _, status in EXCHANGES}

    assert {(m, p) for m, p, ok in covered if ok} == CONSENT_OPERATIONS
    assert {(m, p) for m, p, ok in covered if not ok} == CONSENT_OPERATIONS


async def test_every_documented_operation_answers_a_missing_token_as_documented(
    api: Api,
) -> None:
    document = await fetch_document(api)
    checked = set()

    for path, item in document["paths"].items():
        url = re.sub(r"{(\w+)}", lambda m: APP_ID if m[1] == "app_id" else "x1", path)
        for method, operation in item.items():
            answer = await api.as_token(None).request(method.upper(), url, json_body={})
            assert (answer.status, answer.code) == (401, "unauthorized"), (method, path)
            response = operation["responses"]["401"]
            validator(document, response["content"]["application/json"]["schema"]).validate(
                answer.body
            )
            assert answer.code in documented_codes(response)
            checked.add((method.upper(), path))

    assert checked >= CONSENT_OPERATIONS


async def test_a_schema_violation_is_caught_by_the_validator(api: Api) -> None:
    """The check above can fail: a wrong answer does not validate."""
    document = await fetch_document(api)
    answer = await report_accepted(api)
    [operation] = document["paths"][REPORT].values()
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    broken = json.loads(answer.text)
    broken["subscriptions"][0]["updated_at"] = "yesterday"
    del broken["rule"]

    errors = list(validator(document, schema).iter_errors(broken))

    assert len(errors) == 2
