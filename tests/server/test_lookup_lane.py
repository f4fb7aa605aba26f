"""The single-key lookup on the lane (server/api/subscription_lane.py): a connection that begins
``GET /v1/apps/`` is parsed by httptools and answered by the lane's route, and each answer must
be aiohttp's, byte for byte. Every case is asked twice: first on a new connection (the lane's),
then after a health check on another (which makes the connection aiohttp's), and the two answers
are compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.server.api_client import (
    ADMIN_TOKEN,
    LONG_TERM,
    ONE_TIME,
    OTHER_APP_TOKEN,
    OTHER_USER,
    READER_TOKEN,
    SEND_ONLY_TOKEN,
    USER,
    api_settings,
    new_key,
    success_report,
)
from tests.server.conftest import APP_ID
from tests.server.guarded import Answer, Served, answers_to, request_head, serve_guarded

USERS = f"/v1/apps/{APP_ID}/users"
LOOKUP = f"{USERS}/{USER}/subscriptions/{ONE_TIME}"
HEALTH = request_head("GET", "/healthz", {})


def get(path: str, token: str | None = ADMIN_TOKEN, **headers: str) -> bytes:
    fields = {} if token is None else {"Authorization": f"Bearer {token}"}
    return request_head("GET", path, {**fields, **headers})


async def on_both(served: Served, request: bytes) -> tuple[Answer, Answer]:
    """The answer on a lane connection, then the answer on an aiohttp connection."""
    [lane] = await answers_to(served.port, request, 1)
    [_, aiohttp_answer] = await answers_to(served.port, HEALTH + request, 2)
    assert lane.from_lane and not aiohttp_answer.from_lane
    return lane, aiohttp_answer


def seen(answer: Answer) -> tuple[int, str, str | None, bytes]:
    return (
        answer.status,
        answer.headers["content-type"],
        answer.headers.get("retry-after"),
        answer.body,
    )


async def subscribe(served: Served, user: str, template: str) -> None:
    async with aiohttp.ClientSession(served.url) as client:
        answer = await client.post(
            f"{USERS}/{user}/subscribe-results",
            json=success_report(template),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": new_key()},
        )
        assert answer.status == 200, await answer.text()


CASES = {
    "subscribed": get(LOOKUP),
    "reader token": get(LOOKUP, READER_TOKEN),
    "unknown user": get(f"{USERS}/{OTHER_USER}/subscriptions/{ONE_TIME}"),
    "long-term template": get(f"{USERS}/{USER}/subscriptions/{LONG_TERM}"),
    "template the app does not have": get(f"{USERS}/{USER}/subscriptions/unknown_template"),
    "channel": get(f"{LOOKUP}?channel=jym_push"),
    "empty channel": get(f"{LOOKUP}?channel="),
    "empty query": get(f"{LOOKUP}?"),
    "unknown channel": get(f"{LOOKUP}?channel=carrier_pigeon"),
    "no token": get(LOOKUP, None),
    "unknown token": get(LOOKUP, "not-a-token-0123456789"),
    "not a bearer token": get(LOOKUP, None, Authorization=f"Basic {ADMIN_TOKEN}"),
    "another app's token": get(LOOKUP, OTHER_APP_TOKEN),
    "a token without read": get(LOOKUP, SEND_ONLY_TOKEN),
    "an app not configured": get(f"/v1/apps/2021999999999999/users/{USER}/subscriptions/x"),
    "a user id too long": get(f"{USERS}/{'u' * 65}/subscriptions/{ONE_TIME}"),
    "a template id too long": get(f"{USERS}/{USER}/subscriptions/{'t' * 65}"),
}


@pytest.mark.parametrize("request_bytes", CASES.values(), ids=CASES.keys())
async def test_the_lane_answers_as_aiohttp_does(tmp_path: Path, request_bytes: bytes) -> None:
    async with serve_guarded(api_settings(tmp_path)) as served:
        await subscribe(served, USER, ONE_TIME)
        lane, aiohttp_answer = await on_both(served, request_bytes)
        assert seen(lane) == seen(aiohttp_answer)


async def test_an_answer_reads_the_ledger_and_refusals_are_counted(tmp_path: Path) -> None:
    async with serve_guarded(api_settings(tmp_path)) as served:
        [before] = await answers_to(served.port, get(LOOKUP), 1)
        await subscribe(served, USER, ONE_TIME)
        [after, refused] = await answers_to(served.port, get(LOOKUP) + get(LOOKUP, None), 2)
        assert before.from_lane and after.from_lane and refused.from_lane
        assert b'"can_send":false' in before.body and b'"can_send":true' in after.body
        assert refused.status == 401 and served.error_answers("unauthorized") == 1


ELSEWHERE = {
    # Each goes to aiohttp, which decodes it: the lane takes only the plain form.
    "an escaped user id": (f"{USERS}/{USER[:-1]}%3{USER[-1]}/subscriptions/{ONE_TIME}", 200),
    "another query parameter": (f"{LOOKUP}?channel=mini_template&x=1", 200),
    "a trailing slash": (f"{LOOKUP}/", 404),
    "the list of a user's subscriptions": (f"{USERS}/{USER}/subscriptions", 200),
}


@pytest.mark.parametrize(("path", "status"), ELSEWHERE.values(), ids=ELSEWHERE.keys())
async def test_what_the_lane_does_not_take_is_answered_by_aiohttp(
    tmp_path: Path, path: str, status: int
) -> None:
    async with serve_guarded(api_settings(tmp_path)) as served:
        [lookup, other] = await answers_to(served.port, get(LOOKUP) + get(path), 2)
        assert lookup.from_lane and lookup.status == 200
        assert (other.from_lane, other.status) == (False, status)


async def test_a_later_write_on_a_lane_connection_is_aiohttps_and_answered_in_order(
    tmp_path: Path,
) -> None:
    """A lookup, a subscribe report and a lookup in one write: the report and everything after
    it are aiohttp's, and the last lookup sees the report."""
    body = json.dumps(success_report(ONE_TIME)).encode()
    report = request_head(
        "POST",
        f"{USERS}/{USER}/subscribe-results",
        {
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Idempotency-Key": new_key(),
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        },
    )
    async with serve_guarded(api_settings(tmp_path)) as served:
        data = get(LOOKUP) + report + body + get(LOOKUP)
        first, reported, last = await answers_to(served.port, data, 3)
        assert [a.from_lane for a in (first, reported, last)] == [True, False, False]
        assert [a.status for a in (first, reported, last)] == [200, 200, 200]
        assert b'"can_send":false' in first.body and b'"can_send":true' in last.body


async def test_another_method_on_the_lookup_path_is_aiohttps(tmp_path: Path) -> None:
    post = request_head(
        "POST", LOOKUP, {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Length": "0"}
    )
    async with serve_guarded(api_settings(tmp_path)) as served:
        [lookup, refused] = await answers_to(served.port, get(LOOKUP) + post, 2)
        assert lookup.from_lane and lookup.status == 200
        assert (refused.from_lane, refused.status, refused.headers["allow"]) == (False, 405, "GET")
