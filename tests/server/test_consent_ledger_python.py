"""ConsentLedger, the Python API a merchant's own code uses, answers exactly as the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server.consent.ledger import ConsentLedger
from server.consent.subscribe_results import SubscribeResult
from server.consent.templates import TemplateRegistry
from server.consent.views import ConsentUpdate, LookupRequest
from server.errors import (
    ChannelNotOptIn,
    IdempotencyConflict,
    InvalidReport,
    RequestRefused,
    ValidationFailed,
)
from storage import Store, open_store
from tests.server.api_client import (
    LONG_TERM,
    ONE_TIME,
    OTHER_USER,
    SEED_FAIL,
    SEED_SUCCESS,
    SEED_TEMPLATE,
    USER,
    Api,
    api_settings,
    ledger_rows,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, Clock, StartGateway

OpenLedger = Callable[[Path], Awaitable[ConsentLedger]]


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    (tmp_path / "http").mkdir()
    return await start_api(start_gateway, tmp_path / "http")


@pytest.fixture
async def open_ledger(tmp_path: Path) -> AsyncIterator[OpenLedger]:
    """A ConsentLedger built as server/wiring/app.py builds it, on the SQLite file at ``path``."""
    stores: list[Store] = []

    async def open_at(path: Path) -> ConsentLedger:
        settings = api_settings(path.parent)
        store = await open_store(f"sqlite:///{path}", busy_timeout_ms=2000)
        stores.append(store)
        return ConsentLedger(store, TemplateRegistry(settings.apps), Clock())

    yield open_at
    for store in stores:
        await store.close()


def report(body: dict[str, Any]) -> SubscribeResult:
    return SubscribeResult.model_validate(body)


async def test_a_report_and_its_lookups_answer_the_same_in_python_and_over_http(
    api: Api, open_ledger: OpenLedger, tmp_path: Path
) -> None:
    (tmp_path / "python").mkdir()
    ledger = await open_ledger(tmp_path / "python" / "subgate.db")
    body = success_report(ONE_TIME, rejected=[LONG_TERM], keep=True)

    over_http = await api.report(body, key="same-key")
    in_python = await ledger.report_subscribe_result(APP_ID, USER, report(body), "same-key")

    assert in_python.model_dump(mode="json") == over_http.body
    lookup = {"template_id": ONE_TIME, "user_ids": [OTHER_USER, USER]}
    python_lookup = await ledger.lookup(APP_ID, LookupRequest.model_validate(lookup))
    assert python_lookup.model_dump(mode="json") == (await api.lookup(lookup)).body
    python_list = await ledger.subscriptions(APP_ID, USER)
    assert python_list.model_dump(mode="json") == (await api.subscriptions()).body
    python_one = await ledger.subscription(APP_ID, USER, LONG_TERM)
    assert python_one.model_dump(mode="json") == (await api.subscription(LONG_TERM)).body
    python_history = await ledger.history(APP_ID, USER, ONE_TIME)
    assert python_history.model_dump(mode="json") == (await api.history(ONE_TIME)).body


async def test_python_and_http_share_one_ledger_file(api: Api, open_ledger: OpenLedger) -> None:
    ledger = await open_ledger(api.gateway.db_path)

    answer = await ledger.report_subscribe_result(APP_ID, USER, report(SEED_SUCCESS), "py-1")

    assert answer.subscriptions[0].can_send is True
    over_http = await api.subscription(SEED_TEMPLATE)
    assert over_http.body == answer.subscriptions[0].model_dump(mode="json")
    replay = await api.report(SEED_SUCCESS, key="py-1")
    assert (replay.status, replay.body) == (200, answer.model_dump(mode="json"))
    await api.assert_projection_is_the_fold()


async def test_an_unknown_user_cannot_be_sent_to_in_python_either(
    open_ledger: OpenLedger, tmp_path: Path
) -> None:
    ledger = await open_ledger(tmp_path / "subgate.db")

    answer = await ledger.subscription(APP_ID, "2088000000009999", ONE_TIME)

    assert (answer.status, answer.can_send, answer.credits) == ("none", False, 0)


async def test_a_fail_callback_changes_nothing_in_python_either(
    open_ledger: OpenLedger, tmp_path: Path
) -> None:
    ledger = await open_ledger(tmp_path / "subgate.db")

    answer = await ledger.report_subscribe_result(APP_ID, USER, report(SEED_FAIL), "k1")

    assert (answer.rule, answer.applied, answer.reason) == ("R1", False, "user_cancelled")
    assert (await ledger.subscriptions(APP_ID, USER)).subscriptions == []


async def refused(call: Awaitable[object]) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(
    ("make_call", "error", "code"),
    [
        pytest.param(
            lambda ledger: ledger.report_subscribe_result(
                APP_ID, USER, report({**success_report(ONE_TIME), ONE_TIME: "reject"}), "k"
            ),
            InvalidReport,
            "invalid_report",
            id="contradiction",
        ),
        pytest.param(
            lambda ledger: ledger.report_subscribe_result(
                APP_ID,
                USER,
                report(
                    {
                        **success_report(ONE_TIME),
                        "reported_at": (Clock().now + timedelta(hours=1)).isoformat(),
                    }
                ),
                "k",
            ),
            ValidationFailed,
            "validation_failed",
            id="future",
        ),
        pytest.param(
            lambda ledger: ledger.set_consent(
                APP_ID,
                USER,
                "mini_template",
                ONE_TIME,
                ConsentUpdate(status="granted", evidence="e"),
            ),
            ChannelNotOptIn,
            "channel_not_opt_in",
            id="not-opt-in",
        ),
    ],
)
async def test_python_refusals_are_the_http_error_codes_and_write_nothing(
    open_ledger: OpenLedger,
    tmp_path: Path,
    make_call: Callable[[ConsentLedger], Awaitable[object]],
    error: type[RequestRefused],
    code: str,
) -> None:
    ledger = await open_ledger(tmp_path / "subgate.db")

    caught = await refused(make_call(ledger))

    assert isinstance(caught, error) and caught.code == code
    assert (await ledger.subscriptions(APP_ID, USER)).subscriptions == []


async def test_a_conflicting_retry_in_python_raises_and_changes_nothing(
    api: Api, open_ledger: OpenLedger
) -> None:
    ledger = await open_ledger(api.gateway.db_path)
    await ledger.report_subscribe_result(APP_ID, USER, report(SEED_SUCCESS), "py-2")
    before = ledger_rows(api.gateway)

    caught = await refused(ledger.report_subscribe_result(APP_ID, USER, report(SEED_FAIL), "py-2"))

    assert isinstance(caught, IdempotencyConflict)
    assert ledger_rows(api.gateway) == before
