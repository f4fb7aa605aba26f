"""``subgate settle``: the request it makes (``POST /v1/apps/{app}/messages/{id}:settle`` with
``{"outcome", "reason"}``, scope ``send``) and how it shows the answer and a refusal.

The route is built on another branch (issue 23, item 2); until it is merged this runs the command
against a real HTTP server that answers as that contract says, and records what it was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.cli.operator_service import Finished, start_command

APP = "2021000000000001"
TOKEN = "operator-token-0123456789abcdef"


@dataclass
class SettleRoute:
    """The contract's answers: the first settle of ``msg_unknown`` 200, anything else 409."""

    received: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)

    async def settle(self, request: web.Request) -> web.Response:
        message_id = request.match_info["message"]
        body = await request.json()
        self.received.append((request.headers["Authorization"], message_id, body))
        if message_id != "msg_unknown" or message_id in self.settled:
            error = {"code": "message_not_unknown", "message": "only an unknown message settles"}
            return web.json_response({"error": error}, status=409)
        self.settled.add(message_id)
        status = f"settled_{body['outcome']}"
        return web.json_response({"message_id": message_id, "status": status, "attempts": 1})


@pytest.fixture
async def route() -> AsyncIterator[tuple[SettleRoute, str]]:
    contract = SettleRoute()
    app = web.Application()
    app.router.add_post("/v1/apps/{app}/messages/{message}:settle", contract.settle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield contract, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def settle(url: str, cwd: Path, *args: str) -> Finished:
    process = await start_command("settle", APP, *args, "--url", url, token=TOKEN, cwd=cwd)
    out, err = await process.communicate()
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def test_settle_posts_the_outcome_and_the_reason_and_prints_the_message(
    route: tuple[SettleRoute, str], tmp_path: Path
) -> None:
    contract, url = route

    done = await settle(url, tmp_path, "msg_unknown", "--not-delivered", "--reason", "never came")

    assert done.status == 0, done.err
    assert contract.received == [
        (f"Bearer {TOKEN}", "msg_unknown", {"outcome": "not_delivered", "reason": "never came"})
    ]
    lines = dict(line.split(None, 1) for line in done.out.splitlines())
    assert (lines["message_id"], lines["status"]) == ("msg_unknown", "settled_not_delivered")


async def test_settle_as_json_prints_the_answer(
    route: tuple[SettleRoute, str], tmp_path: Path
) -> None:
    contract, url = route

    done = await settle(url, tmp_path, "msg_unknown", "--delivered", "--reason", "seen", "--json")

    assert done.status == 0, done.err
    assert json.loads(done.out)["status"] == "settled_delivered"
    assert contract.received[0][2] == {"outcome": "delivered", "reason": "seen"}


async def test_settling_twice_is_one_line_with_the_409_code(
    route: tuple[SettleRoute, str], tmp_path: Path
) -> None:
    _, url = route
    first = await settle(url, tmp_path, "msg_unknown", "--delivered", "--reason", "seen")

    again = await settle(url, tmp_path, "msg_unknown", "--delivered", "--reason", "seen")

    assert first.status == 0 and again.status == 1 and again.out == ""
    assert again.err == (
        "subgate settle: Subgate answered 409 message_not_unknown: "
        "only an unknown message settles\n"
    )


async def test_settle_needs_exactly_one_outcome(tmp_path: Path) -> None:
    both = await settle("http://127.0.0.1:9", tmp_path, "m", "--delivered", "--not-delivered",
                        "--reason", "x")  # fmt: skip

    assert both.status == 2 and "not allowed with argument" in both.err
