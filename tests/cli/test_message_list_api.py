"""GET /v1/apps/{app_id}/messages, the list ``subgate messages`` reads: its answers validate
against /openapi.json, filters and pages are applied, bad parameters are refused with their
codes (the store's read, ``messages_page``, runs on both backends in
tests/storage/test_console_reads_contract.py)."""

from __future__ import annotations

from typing import Any

from tests.cli.operator_service import Running
from tests.server.conftest import APP_ID, OTHER_APP_ID
from tests.server.test_openapi import documented_codes, validator

PATH = f"/v1/apps/{APP_ID}/messages"


async def test_answers_and_refusals_are_as_documented(running: Running) -> None:
    _, document = await running.call("GET", "/openapi.json")
    responses = document["paths"]["/v1/apps/{app_id}/messages"]["get"]["responses"]
    exchanges: list[tuple[str, int, str | None]] = [
        ("", 200, None),
        ("?status=unknown&channel=mini_template&limit=1", 200, None),
        ("?status=lost", 400, "invalid_parameter"),
        ("?channel=carrier_pigeon", 400, "invalid_parameter"),
        ("?limit=0", 400, "invalid_parameter"),
        ("?limit=101", 400, "invalid_parameter"),
        ("?after=bm90LWEtY3Vyc29y", 400, "invalid_cursor"),
    ]

    for query, status, code in exchanges:
        got, body = await running.call("GET", PATH + query)
        assert got == status, (query, body)
        response = responses[str(status)]
        validator(document, response["content"]["application/json"]["schema"]).validate(body)
        if code is not None:
            assert body["error"]["code"] == code and code in documented_codes(response)


async def test_filters_and_pages_pick_the_right_messages(running: Running) -> None:
    sent, unknown = running.messages["sent"], running.messages["unknown"]

    answers: dict[str, Any] = {}
    for query in ("", "?status=unknown", "?status=sent", "?status=failed", "?channel=jym_push"):
        _, answers[query] = await running.call("GET", PATH + query)
    _, first = await running.call("GET", PATH + "?limit=1")
    _, second = await running.call("GET", PATH + f"?limit=1&after={first['next_cursor']}")
    _, third = await running.call("GET", PATH + f"?limit=1&after={second['next_cursor']}")

    def ids(page: dict[str, Any]) -> list[str]:
        return [m["message_id"] for m in page["messages"]]

    assert ids(answers[""]) == [sent, unknown] and answers[""]["next_cursor"] is None
    assert ids(answers["?status=unknown"]) == [unknown]
    assert ids(answers["?status=sent"]) == [sent]
    assert ids(answers["?status=failed"]) == ids(answers["?channel=jym_push"]) == []
    assert (ids(first), ids(second), ids(third)) == ([sent], [unknown], [])
    assert third["next_cursor"] is None


async def test_an_app_not_configured_is_not_found(running: Running) -> None:
    status, body = await running.call("GET", f"/v1/apps/{OTHER_APP_ID}/messages")

    assert (status, body["error"]["code"]) == (404, "app_not_found")
