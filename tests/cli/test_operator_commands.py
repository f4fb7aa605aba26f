"""``subgate user``, ``message``, ``messages`` and ``notifications`` against a real running
Subgate: tables for people, ``--json`` for scripts, one line on stderr and a non-zero exit on
any failure."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.cli.operator_service import SUBGATE, Running, start_command
from tests.server.api_client import USER
from tests.server.conftest import APP_ID
from tests.server.send_fixtures import ONE_TIME
from tests.server.subgate_process import TOKEN


async def test_user_prints_each_state_and_every_event_as_tables(running: Running) -> None:
    done = await running.run("user", APP_ID, USER, "--url", running.url)

    assert done.status == 0, done.err
    states, history = done.out.split("\n\n")
    header, row = states.splitlines()
    assert header.split() == [
        "TEMPLATE_ID", "CHANNEL", "KIND", "STATUS", "CREDITS", "CAN_SEND", "UPDATED_AT",
        "LAST_SOURCE",
    ]  # fmt: skip
    assert row.split()[:6] == [ONE_TIME, "mini_template", "one_time", "subscribed", "0", "no"]
    actions = [line.split()[3] for line in history.splitlines()[1:]]
    assert actions == ["accept", "accept", "spend", "spend"]


async def test_user_as_json_is_the_api_answer_with_the_histories(running: Running) -> None:
    done = await running.run("user", APP_ID, USER, "--url", running.url, "--json")

    assert done.status == 0, done.err
    answer = done.json()
    _, expected = await running.call("GET", f"/v1/apps/{APP_ID}/users/{USER}/subscriptions")
    assert answer["subscriptions"] == expected["subscriptions"]
    [history] = answer["histories"]
    assert history["template_id"] == ONE_TIME
    assert [e["action"] for e in history["events"]] == ["accept", "accept", "spend", "spend"]


async def test_message_prints_one_message_and_its_json(running: Running) -> None:
    message_id = running.messages["unknown"]

    table = await running.run("message", APP_ID, message_id, "--url", running.url)
    as_json = await running.run("message", APP_ID, message_id, "--url", running.url, "--json")

    assert table.status == as_json.status == 0, table.err + as_json.err
    fields = dict(line.split(None, 1) for line in table.out.splitlines() if " " in line.strip())
    assert (fields["message_id"], fields["status"], fields["attempts"]) == (
        message_id,
        "unknown",
        "1",
    )
    _, expected = await running.call("GET", f"/v1/apps/{APP_ID}/messages/{message_id}")
    assert as_json.json() == expected


async def test_messages_lists_the_unknown_ones_and_pages_through_all(running: Running) -> None:
    unknown = await running.run("messages", APP_ID, "--status", "unknown", "--url", running.url)
    everything = await running.run(
        "messages", APP_ID, "--limit", "5", "--json", "--url", running.url
    )

    assert unknown.status == everything.status == 0, unknown.err + everything.err
    header, *rows = unknown.out.splitlines()
    assert header.split()[:2] == ["MESSAGE_ID", "STATUS"]
    assert [row.split()[:2] for row in rows] == [[running.messages["unknown"], "unknown"]]
    listed = everything.json()
    assert [m["message_id"] for m in listed] == [
        running.messages["sent"],
        running.messages["unknown"],
    ]


async def test_messages_follows_the_cursor_page_by_page(running: Running) -> None:
    first = await running.run("messages", APP_ID, "--limit", "1", "--json", "--url", running.url)
    status, page = await running.call("GET", f"/v1/apps/{APP_ID}/messages?limit=1")
    status_next, rest = await running.call(
        "GET", f"/v1/apps/{APP_ID}/messages?limit=1&after={page['next_cursor']}"
    )

    assert first.status == 0 and status == status_next == 200
    assert [m["message_id"] for m in first.json()] == [running.messages["sent"]]
    assert [m["message_id"] for m in rest["messages"]] == [running.messages["unknown"]]


async def test_notifications_prints_the_latest_then_tails_new_ones(running: Running) -> None:
    await running.simulate_trade("order-1")
    listed = await running.run("notifications", APP_ID, "--json", "--url", running.url)
    tail = await start_command(
        "notifications", APP_ID, "--tail", "--last", "0", "--url", running.url,
        token="process-test-token-0123456789abcdef", cwd=running.cwd,
    )  # fmt: skip
    assert tail.stdout is not None
    header = await asyncio.wait_for(tail.stdout.readline(), 30)
    await running.simulate_trade("order-2")
    line = await asyncio.wait_for(tail.stdout.readline(), 30)
    tail.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(tail.communicate(), 30)

    assert listed.status == 0, listed.err
    [event] = [json.loads(text) for text in listed.out.splitlines()]
    assert (event["type"], event["data"]["kind"]) == ("notification.received", "trade_status_sync")
    assert header.decode().split() == ["RECEIVED_AT", "KIND", "NOTIFY_ID", "DETAIL"]
    assert line.decode().split()[1] == "trade_status_sync"
    assert line.decode().split()[2] != event["data"]["notify_id"]
    assert tail.returncode == 0 and err == b""


async def test_the_console_script_runs_the_same_commands(running: Running) -> None:
    done = await running.run(
        "messages", APP_ID, "--status", "sent", "--json", "--url", running.url, program=(SUBGATE,)
    )

    assert done.status == 0, done.err
    assert [m["message_id"] for m in done.json()] == [running.messages["sent"]]


@pytest.mark.parametrize(
    ("args", "token", "expected"),
    [
        (("message", APP_ID, "msg_nobody"), "process-test-token-0123456789abcdef",
         "subgate message: Subgate answered 404 not_found: no such message for this app"),
        (("user", APP_ID, USER), "not-a-token-of-this-service",
         "subgate user: Subgate refused the token (401 unauthorized: "),
        (("messages", APP_ID, "--status", "lost"), "process-test-token-0123456789abcdef",
         "subgate messages: Subgate answered 400 invalid_parameter: status must be one of "),
    ],
)  # fmt: skip
async def test_a_refusal_is_one_line_with_the_api_code_and_exit_1(
    running: Running, args: tuple[str, ...], token: str, expected: str
) -> None:
    done = await running.run(*args, "--url", running.url, token=token)

    assert done.status == 1 and done.out == ""
    [line] = done.err.splitlines()
    assert line.startswith(expected)


async def test_the_token_may_be_the_path_of_a_file_holding_it(running: Running) -> None:
    token_file = running.cwd / "api-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)

    done = await running.run(
        "messages", APP_ID, "--status", "unknown", "--url", running.url, token=str(token_file)
    )

    assert done.status == 0, done.err
    assert running.messages["unknown"] in done.out


async def test_settle_refunds_a_not_delivered_message_once(running: Running) -> None:
    unknown = running.messages["unknown"]

    settled = await running.run(
        "settle", APP_ID, unknown, "--not-delivered", "--reason", "support: never shown",
        "--url", running.url,
    )  # fmt: skip
    again = await running.run(
        "settle",
        APP_ID,
        unknown,
        "--delivered",
        "--reason",
        "second thoughts",
        "--url",
        running.url,
    )
    after = await running.run("user", APP_ID, USER, "--json", "--url", running.url)

    assert settled.status == 0, settled.err
    fields = dict(line.split(None, 1) for line in settled.out.splitlines() if " " in line.strip())
    assert (fields["message_id"], fields["status"]) == (unknown, "settled_not_delivered")
    assert again.status == 1 and again.out == ""
    [line] = again.err.splitlines()
    assert line.startswith("subgate settle: Subgate answered 409 message_not_unknown: ")
    [state] = after.json()["subscriptions"]
    assert state["credits"] == 1  # the unknown send's credit came back, the sent one's did not


async def test_settle_as_json_prints_the_settled_message(running: Running) -> None:
    unknown = running.messages["unknown"]

    done = await running.run(
        "settle", APP_ID, unknown, "--delivered", "--reason", "the user saw it", "--json",
        "--url", running.url,
    )  # fmt: skip
    listed = await running.run(
        "messages", APP_ID, "--status", "settled_delivered", "--json", "--url", running.url
    )

    assert done.status == listed.status == 0, done.err + listed.err
    assert (done.json()["message_id"], done.json()["status"]) == (unknown, "settled_delivered")
    assert [m["message_id"] for m in listed.json()] == [unknown]


async def test_settling_a_sent_message_is_refused_with_its_code(running: Running) -> None:
    done = await running.run(
        "settle", APP_ID, running.messages["sent"], "--delivered", "--reason", "x",
        "--url", running.url,
    )  # fmt: skip

    assert done.status == 1
    assert done.err.startswith("subgate settle: Subgate answered 409 message_not_unknown: ")
