"""POST /v1/apps/{app}/users/{user}/subscribe-results: docs/subscribe-results.md row by row,
idempotency, concurrency and out-of-order reports, through a real server and SQLite file."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from storage.models import ConsentState
from tests.server.api_client import (
    LONG_TERM,
    ONE_TIME,
    OTHER_USER,
    SECOND_ONE_TIME,
    SEED_FAIL,
    SEED_SUCCESS,
    SEED_TEMPLATE,
    UNREGISTERED,
    USER,
    Api,
    fail_report,
    ledger_rows,
    new_key,
    platform_cancel,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, OTHER_APP_ID, StartGateway

BEIJING = timezone(timedelta(hours=8))


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> AsyncIterator[Api]:
    api = await start_api(start_gateway, tmp_path)
    yield api
    await api.assert_projection_is_the_fold(APP_ID)  # after every scenario
    await api.assert_projection_is_the_fold(OTHER_APP_ID)


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def subscription(
    template: str,
    *,
    kind: str,
    status: str,
    credits: int,
    can_send: bool,
    updated_at: str = "2026-11-23T08:00:00Z",
    keep: bool = False,
    refuse: bool = False,
    last_source: str = "client_report",
) -> dict[str, Any]:
    return {
        "template_id": template,
        "channel": "mini_template",
        "kind": kind,
        "status": status,
        "credits": credits,
        "can_send": can_send,
        "keep": keep,
        "refuse": refuse,
        "updated_at": updated_at,
        "last_source": last_source,
    }


# --- The mapping table, row by row -------------------------------------------------------------

APPLYING_ROWS = {"R5", "R6"}  # the tests named test_r5_* and test_r6_* below
CANCELLED_WITHOUT_CODE = without(SEED_FAIL, "error", "errorCode", "errorMessage")

NOTHING_CHANGES = [
    pytest.param(SEED_FAIL, "R1", "user_cancelled", id="R1-seed-fail-shape-code-11"),
    pytest.param(fail_report(ONE_TIME, code=10), "R1", "system_error", id="R1-code-10"),
    pytest.param(fail_report(ONE_TIME, code=15), "R1", "panel_already_open", id="R1-code-15"),
    pytest.param(fail_report(ONE_TIME, code=203), "R1", "invalid_params", id="R1-code-203"),
    pytest.param(fail_report(ONE_TIME, code=402), "R1", "app_cannot_serve", id="R1-code-402"),
    pytest.param(fail_report(ONE_TIME, code=100201), "R1", "rate_limited", id="R1-code-100201"),
    pytest.param(
        fail_report(ONE_TIME, LONG_TERM, code=106002),
        "R1",
        "mixed_template_types",
        id="R1-code-106002",
    ),
    pytest.param(fail_report(ONE_TIME, code=106008), "R1", "invalid_template", id="R1-code-106008"),
    pytest.param(fail_report(ONE_TIME, code=-1), "R1", "failed", id="R1-code-minus-1"),
    pytest.param(
        {**without(success_report(ONE_TIME), "errorCode"), "error": 15},
        "R1",
        "panel_already_open",
        id="R1-error-only-on-a-success-shape",
    ),
    pytest.param(CANCELLED_WITHOUT_CODE, "R2", "user_cancelled", id="R2-behavior-cancel"),
    pytest.param({**success_report(ONE_TIME), "behavior": ""}, "R3", "failed", id="R3-empty"),
    pytest.param({**success_report(ONE_TIME), "success": False}, "R3", "failed", id="R3-false"),
    pytest.param(
        without(success_report(ONE_TIME), "behavior"), "R3", "failed", id="R3-no-behavior"
    ),
    pytest.param(success_report(ONE_TIME, show=False), "R4", "not_shown", id="R4-not-shown"),
    pytest.param(
        success_report(before=[ONE_TIME, LONG_TERM]),
        "R7",
        "nothing_decided",
        id="R7-only-already-subscribed",
    ),
    pytest.param(
        {
            **success_report(),
            "result": {"subscribeEntityIds": [ONE_TIME], "entityList": [ONE_TIME]},
        },
        "R7",
        "nothing_decided",
        id="R7-only-requested",
    ),
]


def test_every_row_of_the_mapping_table_is_exercised_here() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "subscribe-results.md").read_text("utf-8")
    rows = set(re.findall(r"^\| (R\d) \|", doc, re.M))

    exercised = {str(p.values[1]) for p in NOTHING_CHANGES} | APPLYING_ROWS

    assert rows == exercised == {f"R{n}" for n in range(1, 8)}


@pytest.mark.parametrize(("report", "rule", "reason"), NOTHING_CHANGES)
async def test_rows_that_decide_nothing_change_no_subscription(
    api: Api, report: dict[str, Any], rule: str, reason: str
) -> None:
    answer = await api.report(report)

    assert answer.status == 200, answer.text
    assert {k: answer.body[k] for k in ("rule", "applied", "reason", "changes")} == {
        "rule": rule,
        "applied": False,
        "reason": reason,
        "changes": [],
    }
    assert answer.body["subscriptions"] == []
    assert (await api.subscriptions()).body["subscriptions"] == []
    assert await api.store.consent_events(APP_ID) == []
    assert len(ledger_rows(api.gateway)["subscribe_reports"]) == 1  # kept as evidence


async def test_r4_show_false_grants_no_credit_on_top_of_an_earlier_acceptance(api: Api) -> None:
    await api.report(success_report(ONE_TIME))
    api.later(minutes=1)

    answer = await api.report(success_report(ONE_TIME, show=False))

    assert (answer.body["rule"], answer.body["applied"]) == ("R4", False)
    assert (await api.subscription_of(ONE_TIME))["credits"] == 1
    await api.assert_projection_is_the_fold()


async def test_r5_the_seed_success_object_grants_its_one_time_template_one_credit(
    api: Api,
) -> None:
    answer = await api.report(SEED_SUCCESS)

    assert answer.status == 200, answer.text
    expected = subscription(
        SEED_TEMPLATE, kind="one_time", status="subscribed", credits=1, can_send=True
    )
    assert without(answer.body, "report_id") == {
        "rule": "R5",
        "applied": True,
        "reason": "applied",
        "changes": [{"template_id": SEED_TEMPLATE, "action": "accept"}],
        "subscriptions": [expected],
    }
    assert await api.subscription_of(SEED_TEMPLATE) == expected
    await api.assert_projection_is_the_fold()


async def test_r5_each_one_time_acceptance_grants_exactly_one_more_credit(api: Api) -> None:
    for _ in range(3):
        await api.report(success_report(ONE_TIME))
        api.later(minutes=1)

    state = await api.subscription_of(ONE_TIME)

    assert (state["status"], state["credits"], state["can_send"]) == ("subscribed", 3, True)
    [stored] = await api.assert_projection_is_the_fold()
    assert stored.credits == 3


async def test_r5_a_long_term_acceptance_opens_the_template_without_credits(api: Api) -> None:
    answer = await api.report(success_report(LONG_TERM))

    expected = subscription(
        LONG_TERM, kind="long_term", status="subscribed", credits=0, can_send=True
    )
    assert answer.body["subscriptions"] == [expected]
    assert await api.subscription_of(LONG_TERM) == expected


@pytest.mark.parametrize(
    ("report", "changes"),
    [
        pytest.param(
            {"success": True, "behavior": "subscribe", "show": True, ONE_TIME: "accept"},
            [(ONE_TIME, "accept")],
            id="no-result-at-all",
        ),
        pytest.param(
            {
                "success": True,
                "behavior": "subscribe",
                "show": True,
                "result": {"subscribeEntityIds": [ONE_TIME, LONG_TERM]},
                ONE_TIME: "accept",
                LONG_TERM: "reject",
            },
            [(ONE_TIME, "accept"), (LONG_TERM, "reject")],
            id="result-without-current-list",
        ),
    ],
)
async def test_r5_per_id_accept_decides_when_there_is_no_current_subscribed_list(
    api: Api, report: dict[str, Any], changes: list[tuple[str, str]]
) -> None:
    answer = await api.report(report)

    assert answer.body["rule"] == "R5"
    assert [(c["template_id"], c["action"]) for c in answer.body["changes"]] == changes
    assert (await api.subscription_of(ONE_TIME))["credits"] == 1


async def test_r5_a_current_subscribed_list_overrides_per_id_accepts(api: Api) -> None:
    report = success_report(ONE_TIME, before=[SECOND_ONE_TIME])  # SECOND: "accept", not new

    answer = await api.report(report)

    assert answer.body["changes"] == [{"template_id": ONE_TIME, "action": "accept"}]
    assert (await api.subscription_of(SECOND_ONE_TIME))["status"] == "none"


async def test_r6_unsubscribed_ids_reject_and_close_a_long_term_template(api: Api) -> None:
    await api.report(success_report(LONG_TERM))
    api.later(minutes=1)

    answer = await api.report(success_report(rejected=[LONG_TERM]))

    expected = subscription(
        LONG_TERM,
        kind="long_term",
        status="rejected",
        credits=0,
        can_send=False,
        updated_at="2026-11-23T08:01:00Z",
    )
    assert without(answer.body, "report_id") == {
        "rule": "R6",
        "applied": True,
        "reason": "applied",
        "changes": [{"template_id": LONG_TERM, "action": "reject"}],
        "subscriptions": [expected],
    }
    assert await api.subscription_of(LONG_TERM) == expected
    await api.assert_projection_is_the_fold()


async def test_r6_a_rejection_keeps_one_time_credits_granted_earlier(api: Api) -> None:
    await api.report(success_report(ONE_TIME))
    api.later(minutes=1)

    await api.report(success_report(rejected=[ONE_TIME]))

    state = await api.subscription_of(ONE_TIME)
    assert (state["status"], state["credits"], state["can_send"]) == ("rejected", 1, True)


async def test_r6_a_per_id_reject_without_unsubscribed_ids_rejects(api: Api) -> None:
    report = {"success": True, "behavior": "subscribe", "show": True, LONG_TERM: "reject"}

    answer = await api.report(report)

    assert (answer.body["rule"], answer.body["changes"]) == (
        "R6",
        [{"template_id": LONG_TERM, "action": "reject"}],
    )
    assert (await api.subscription_of(LONG_TERM))["status"] == "rejected"


async def test_one_report_may_accept_one_template_and_reject_another(api: Api) -> None:
    answer = await api.report(success_report(ONE_TIME, rejected=[LONG_TERM]))

    assert answer.body["rule"] == "R5"
    assert answer.body["changes"] == [
        {"template_id": ONE_TIME, "action": "accept"},
        {"template_id": LONG_TERM, "action": "reject"},
    ]
    assert [(s["template_id"], s["status"]) for s in answer.body["subscriptions"]] == [
        (ONE_TIME, "subscribed"),
        (LONG_TERM, "rejected"),
    ]


async def test_a_long_term_acceptance_can_send_and_a_later_rejection_cannot(api: Api) -> None:
    await api.report(success_report(LONG_TERM))
    can_before = (await api.subscription_of(LONG_TERM))["can_send"]
    api.later(minutes=5)

    await api.report(success_report(rejected=[LONG_TERM]))

    assert (can_before, (await api.subscription_of(LONG_TERM))["can_send"]) == (True, False)


@pytest.mark.parametrize(
    "report",
    [
        pytest.param(
            {
                **success_report(ONE_TIME),
                "result": {
                    "currentSubscribedEntityIds": [ONE_TIME],
                    "unsubscribedEntityIds": [ONE_TIME],
                },
            },
            id="in-both-lists",
        ),
        pytest.param(
            {**success_report(ONE_TIME), ONE_TIME: "reject"}, id="listed-accepted-answered-reject"
        ),
        pytest.param(
            success_report(ONE_TIME, LONG_TERM, SECOND_ONE_TIME, SEED_TEMPLATE),
            id="four-templates",
        ),
        pytest.param(
            success_report(ONE_TIME, LONG_TERM, rejected=[SECOND_ONE_TIME, SEED_TEMPLATE]),
            id="four-templates-mixed",
        ),
        pytest.param(success_report("not a template id"), id="template-id-with-spaces"),
    ],
)
async def test_a_contradictory_or_oversized_report_is_refused_and_writes_nothing(
    api: Api, report: dict[str, Any]
) -> None:
    before = ledger_rows(api.gateway)

    answer = await api.report(report)

    assert (answer.status, answer.code) == (422, "invalid_report")
    assert set(answer.body["error"]) == {"code", "message"}
    assert ledger_rows(api.gateway) == before
    assert before["subscribe_reports"] == []


async def test_three_templates_decided_in_one_report_is_the_platform_limit_and_fine(
    api: Api,
) -> None:
    answer = await api.report(success_report(ONE_TIME, SECOND_ONE_TIME, rejected=[LONG_TERM]))

    assert answer.status == 200
    assert len(answer.body["changes"]) == 3


async def test_an_unregistered_template_is_kept_as_unknown_and_treated_as_one_time(
    api: Api,
) -> None:
    first = await api.report(success_report(UNREGISTERED))
    api.later(minutes=1)
    await api.report(success_report(UNREGISTERED))

    state = await api.subscription_of(UNREGISTERED)
    assert first.body["subscriptions"][0]["kind"] == "unknown"
    assert (state["kind"], state["status"], state["credits"], state["can_send"]) == (
        "unknown",
        "subscribed",
        2,
        True,
    )
    [stored] = await api.assert_projection_is_the_fold()
    assert stored.template_id == UNREGISTERED


async def test_keep_and_refuse_are_stored_on_each_event_and_shown(api: Api) -> None:
    await api.report(success_report(ONE_TIME, keep=True))
    api.later(minutes=1)
    await api.report(success_report(rejected=[LONG_TERM], refuse=True))

    one_time, long_term = await api.subscription_of(ONE_TIME), await api.subscription_of(LONG_TERM)
    history = (await api.history(LONG_TERM)).body["events"]

    assert (one_time["keep"], one_time["refuse"], one_time["kind"]) == (True, False, "one_time")
    assert (long_term["keep"], long_term["refuse"]) == (False, True)
    assert [(e["action"], e["keep"], e["refuse"]) for e in history] == [("reject", False, True)]
    events = await api.store.consent_events(APP_ID, USER)
    assert [(e.template_id, e.keep, e.refuse) for e in events] == [
        (ONE_TIME, True, False),
        (LONG_TERM, False, True),
    ]


async def test_keep_true_does_not_make_a_one_time_template_long_term(api: Api) -> None:
    await api.report(success_report(ONE_TIME, keep=True))

    state = await api.subscription_of(ONE_TIME)

    assert (state["kind"], state["credits"]) == ("one_time", 1)


async def test_a_report_is_evidence_named_by_its_idempotency_key(api: Api) -> None:
    await api.report(success_report(ONE_TIME), key="mini-7f3a-0001")

    [event] = (await api.history(ONE_TIME)).body["events"]

    assert (event["action"], event["source"], event["evidence"]) == (
        "accept",
        "client_report",
        "report:mini-7f3a-0001",
    )


# --- Idempotency -------------------------------------------------------------------------------


async def test_the_same_report_sent_twice_is_applied_once_and_answered_the_same(
    api: Api,
) -> None:
    key = new_key()
    first = await api.report(success_report(ONE_TIME), key=key)
    api.later(minutes=1)

    second = await api.report(success_report(ONE_TIME), key=key)

    assert (first.status, second.status) == (200, 200)
    assert second.body == first.body
    assert (await api.subscription_of(ONE_TIME))["credits"] == 1
    rows = ledger_rows(api.gateway)
    assert (len(rows["consent_events"]), len(rows["subscribe_reports"])) == (1, 1)


async def test_a_retry_with_its_keys_in_another_order_is_the_same_report(api: Api) -> None:
    key = new_key()
    report = success_report(ONE_TIME, rejected=[LONG_TERM])
    reordered = {k: report[k] for k in reversed(list(report))}
    reordered["result"] = {k: report["result"][k] for k in reversed(list(report["result"]))}
    assert json.dumps(reordered) != json.dumps(report)
    first = await api.report(report, key=key)

    second = await api.report(None, key=key, data=json.dumps(reordered, indent=2).encode())

    assert (second.status, second.body) == (200, first.body)
    assert len(ledger_rows(api.gateway)["consent_events"]) == 2


async def test_the_same_key_with_another_report_is_a_conflict_and_changes_nothing(
    api: Api,
) -> None:
    key = new_key()
    await api.report(success_report(ONE_TIME), key=key)
    before = ledger_rows(api.gateway)

    answer = await api.report(success_report(LONG_TERM), key=key)

    assert (answer.status, answer.code) == (409, "idempotency_conflict")
    assert ledger_rows(api.gateway) == before


async def test_the_same_key_and_body_for_another_user_is_a_conflict_not_a_replay(
    api: Api,
) -> None:
    key = new_key()
    await api.report(success_report(ONE_TIME), key=key, user=USER)
    before = ledger_rows(api.gateway)

    answer = await api.report(success_report(ONE_TIME), key=key, user=OTHER_USER)

    assert (answer.status, answer.code) == (409, "idempotency_conflict")
    assert USER not in answer.text
    assert ledger_rows(api.gateway) == before


async def test_a_report_without_an_idempotency_key_is_refused_and_writes_nothing(
    api: Api,
) -> None:
    answer = await api.request(
        "POST",
        f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results",
        json_body=success_report(ONE_TIME),
    )

    assert (answer.status, answer.code) == (400, "idempotency_key_required")
    assert ledger_rows(api.gateway)["subscribe_reports"] == []
    assert await api.store.consent_events(APP_ID) == []


@pytest.mark.parametrize("key", ["", "with space", "x" * 129, "clé"])
async def test_an_idempotency_key_outside_printable_ascii_is_a_validation_failure(
    api: Api, key: str
) -> None:
    answer = await api.report(success_report(ONE_TIME), headers={"Idempotency-Key": key})

    assert (answer.status, answer.code) == (422, "validation_failed")
    assert await api.store.consent_events(APP_ID) == []


async def test_twenty_concurrent_copies_of_one_report_grant_exactly_one_credit(api: Api) -> None:
    key = new_key()

    answers = await asyncio.gather(
        *(api.report(success_report(ONE_TIME), key=key) for _ in range(20))
    )

    assert {a.status for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    [state] = await api.assert_projection_is_the_fold()
    assert state.credits == 1
    rows = ledger_rows(api.gateway)
    assert (len(rows["consent_events"]), len(rows["subscribe_reports"])) == (1, 1)


async def test_twenty_concurrent_reports_for_one_user_grant_twenty_credits(api: Api) -> None:
    answers = await asyncio.gather(*(api.report(success_report(ONE_TIME)) for _ in range(20)))

    assert {a.status for a in answers} == {200}
    assert len({a.body["report_id"] for a in answers}) == 20
    [state] = await api.assert_projection_is_the_fold()
    assert state.credits == 20
    assert (await api.subscription_of(ONE_TIME))["credits"] == 20


async def test_concurrent_retries_of_two_bodies_under_one_key_apply_exactly_one(api: Api) -> None:
    key = new_key()
    bodies = [success_report(ONE_TIME), success_report(LONG_TERM)] * 5

    answers = await asyncio.gather(*(api.report(body, key=key) for body in bodies))

    winners = [a for a in answers if a.status == 200]
    losers = [a for a in answers if a.status != 200]
    assert len(winners) == 5 and len({a.text for a in winners}) == 1
    assert {(a.status, a.code) for a in losers} == {(409, "idempotency_conflict")}
    rows = ledger_rows(api.gateway)
    assert (len(rows["consent_events"]), len(rows["subscribe_reports"])) == (1, 1)
    [change] = winners[0].body["changes"]
    assert [s["template_id"] for s in (await api.subscriptions()).body["subscriptions"]] == [
        change["template_id"]
    ]


async def test_idempotency_keys_are_per_app(api: Api) -> None:
    key = new_key()

    mine = await api.report(success_report(ONE_TIME), key=key, app=APP_ID)
    theirs = await api.report(success_report(ONE_TIME), key=key, app=OTHER_APP_ID)

    assert (mine.status, theirs.status) == (200, 200)
    assert mine.body["subscriptions"][0]["kind"] == "one_time"
    assert theirs.body["subscriptions"][0]["kind"] == "unknown"  # OTHER_APP_ID registers none
    assert len(await api.store.consent_events(OTHER_APP_ID)) == 1


# --- Out-of-order reports ----------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=BEIJING)  # 07:00 UTC, an hour before the clock's NOW
Step = tuple[str, dict[str, Any] | str, int]  # ("report", body, minute) | ("cancel", template, m)

HISTORY: list[Step] = [
    ("report", success_report(ONE_TIME), 1),
    ("report", success_report(ONE_TIME, LONG_TERM), 2),
    ("report", success_report(rejected=[LONG_TERM], refuse=True), 3),
    ("cancel", ONE_TIME, 4),
    ("report", success_report(ONE_TIME, keep=True), 5),
    ("report", success_report(LONG_TERM, UNREGISTERED), 6),
    ("report", fail_report(ONE_TIME), 7),
    ("report", success_report(rejected=[UNREGISTERED]), 8),
    ("report", success_report(SECOND_ONE_TIME, ONE_TIME), 9),
    ("cancel", SECOND_ONE_TIME, 10),
]


async def replay(api: Api, user: str, steps: list[Step]) -> None:
    for action, what, minute in steps:
        at = T0 + timedelta(minutes=minute)
        if action == "cancel":
            assert isinstance(what, str)
            await api.store.append_consent_events([platform_cancel(what, at, user=user)], at)
        else:
            assert isinstance(what, dict)
            answer = await api.report({**what, "reported_at": at.isoformat()}, user=user)
            assert answer.status == 200, answer.text
        api.later(seconds=1)


def comparable(state: ConsentState) -> tuple[Any, ...]:
    """A state without its user, evidence and event ids (which differ between two replays)."""
    assert state.last_key is not None
    return (state.model_dump(exclude={"user_id", "last_key"}), state.last_key[:4])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_reports_arriving_shuffled_fold_to_the_state_of_the_ordered_stream(
    api: Api, seed: int
) -> None:
    shuffled = HISTORY[:]
    random.Random(seed).shuffle(shuffled)
    assert shuffled != HISTORY

    await replay(api, USER, HISTORY)
    await replay(api, OTHER_USER, shuffled)

    in_order = (await api.subscriptions(USER)).body["subscriptions"]
    reordered = (await api.subscriptions(OTHER_USER)).body["subscriptions"]
    assert reordered == in_order
    states = await api.assert_projection_is_the_fold()
    by_user = {
        user: [comparable(s) for s in states if s.user_id == user] for user in (USER, OTHER_USER)
    }
    assert by_user[USER] == by_user[OTHER_USER]
    assert [(s["template_id"], s["status"], s["credits"]) for s in in_order] == [
        (SECOND_ONE_TIME, "cancelled", 0),
        (UNREGISTERED, "rejected", 1),
        (LONG_TERM, "subscribed", 0),
        (ONE_TIME, "subscribed", 2),
    ]


@pytest.mark.parametrize("template", [ONE_TIME, LONG_TERM])
async def test_an_old_acceptance_reported_after_a_newer_cancel_does_not_reopen_consent(
    api: Api, template: str
) -> None:
    accepted_at = api.clock.now - timedelta(minutes=10)
    cancelled_at = api.clock.now - timedelta(minutes=5)
    await api.store.append_consent_events([platform_cancel(template, cancelled_at)], api.clock.now)

    answer = await api.report(
        {**success_report(template), "reported_at": accepted_at.astimezone(BEIJING).isoformat()}
    )

    assert (answer.status, answer.body["rule"], answer.body["applied"]) == (200, "R5", True)
    state = await api.subscription_of(template)
    assert (state["status"], state["credits"], state["can_send"]) == ("cancelled", 0, False)
    assert state["last_source"] == "platform_query"
    history = (await api.history(template)).body["events"]
    assert [(e["action"], e["source"]) for e in history] == [
        ("accept", "client_report"),
        ("cancel", "platform_query"),
    ]
    await api.assert_projection_is_the_fold()


async def test_an_acceptance_after_the_cancel_reopens_consent(api: Api) -> None:
    cancelled_at = api.clock.now - timedelta(minutes=5)
    await api.store.append_consent_events([platform_cancel(ONE_TIME, cancelled_at)], api.clock.now)

    await api.report(success_report(ONE_TIME))  # reported_at defaults to the arrival time

    state = await api.subscription_of(ONE_TIME)
    assert (state["status"], state["credits"], state["can_send"]) == ("subscribed", 1, True)
    await api.assert_projection_is_the_fold()


@pytest.mark.parametrize(
    ("reported_at", "status"),
    [
        pytest.param(timedelta(minutes=5, seconds=1), 422, id="5min1s-ahead"),
        pytest.param(timedelta(days=1), 422, id="a-day-ahead"),
        pytest.param(timedelta(minutes=4, seconds=59), 200, id="4min59s-ahead-is-skew"),
        pytest.param(-timedelta(days=30), 200, id="a-month-ago"),
    ],
)
async def test_reported_at_more_than_five_minutes_in_the_future_is_refused(
    api: Api, reported_at: timedelta, status: int
) -> None:
    when = (api.clock.now + reported_at).astimezone(BEIJING).isoformat()

    answer = await api.report({**success_report(ONE_TIME), "reported_at": when})

    assert answer.status == status, answer.text
    events = await api.store.consent_events(APP_ID)
    if status == 422:
        assert (
            answer.code == "validation_failed" and "reported_at" in answer.body["error"]["message"]
        )
        assert events == [] and ledger_rows(api.gateway)["subscribe_reports"] == []
    else:
        assert [e.occurred_at for e in events] == [api.clock.now + reported_at]
    await api.assert_projection_is_the_fold()


@pytest.mark.parametrize("when", ["2026-11-23T07:00:00", "2026-11-23 07:00:00", "not a time"])
async def test_reported_at_without_a_time_zone_or_not_a_time_is_refused(
    api: Api, when: str
) -> None:
    answer = await api.report({**success_report(ONE_TIME), "reported_at": when})

    assert (answer.status, answer.code) == (422, "validation_failed")
    assert ledger_rows(api.gateway)["subscribe_reports"] == []
    assert await api.store.consent_events(APP_ID) == []


async def test_reported_at_decides_when_the_acceptance_happened(api: Api) -> None:
    when = datetime(2026, 11, 23, 15, 30, tzinfo=BEIJING)  # 07:30 UTC

    await api.report({**success_report(ONE_TIME), "reported_at": when.isoformat()})

    [event] = (await api.history(ONE_TIME)).body["events"]
    assert (event["occurred_at"], event["recorded_at"]) == (
        "2026-11-23T07:30:00Z",
        "2026-11-23T08:00:00Z",
    )
