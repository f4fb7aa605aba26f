"""Subscribe reports every Store backend must keep: applied once per (app, idempotency key)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

from storage import Store
from storage.models import ConsentState, SubscribeReport
from tests.storage.conftest import StoreFactory
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept


def report(
    key: str = "report-1", body: str = '{"accept":["T-one-time"]}', app_id: str = APP
) -> SubscribeReport:
    return SubscribeReport(
        app_id=app_id,
        user_id=USER,
        idempotency_key=key,
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        body=body,
        received_at=NOW + timedelta(minutes=1),
    )


class Answers:
    """The ``answer`` callback; remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[ConsentState]]] = []

    def __call__(self, report_id: int, states: list[ConsentState]) -> str:
        self.calls.append((report_id, states))
        return json.dumps({"report_id": report_id, "credits": [s.credits for s in states]})


async def credits(store: Store, app_id: str = APP) -> int:
    [state] = await store.consent_states(app_id, USER, "mini_template", TEMPLATE)
    return state.credits


async def test_a_report_applies_its_events_and_keeps_the_answer(store: Store) -> None:
    answer = Answers()

    outcome = await store.record_subscribe_report(report(), [accept(1)], answer)

    assert (outcome.replayed, outcome.conflict) == (False, False)
    [(report_id, states)] = answer.calls
    assert outcome.report_id == report_id
    assert outcome.outcome == json.dumps({"report_id": report_id, "credits": [1]})
    assert [s.credits for s in states] == [1]
    assert await credits(store) == 1


async def test_a_replay_answers_the_same_and_applies_nothing(store: Store) -> None:
    first = await store.record_subscribe_report(report(), [accept(1)], Answers())
    answer = Answers()

    again = await store.record_subscribe_report(report(), [accept(1)], answer)

    assert (again.replayed, again.conflict) == (True, False)
    assert (again.report_id, again.outcome) == (first.report_id, first.outcome)
    assert answer.calls == []
    assert await credits(store) == 1
    assert len(await store.consent_events(APP)) == 1


async def test_another_body_under_the_same_key_is_a_conflict_and_changes_nothing(
    store: Store,
) -> None:
    first = await store.record_subscribe_report(report(), [accept(1)], Answers())

    other = await store.record_subscribe_report(
        report(body='{"accept":[]}'), [accept(2, evidence="other")], Answers()
    )

    assert (other.replayed, other.conflict) == (True, True)
    assert (other.report_id, other.outcome) == (first.report_id, first.outcome)
    assert await credits(store) == 1


async def test_the_same_key_in_another_app_is_another_report(store: Store) -> None:
    first = await store.record_subscribe_report(report(), [accept(1)], Answers())

    other = await store.record_subscribe_report(
        report(app_id="2021000000000002"), [accept(1, app_id="2021000000000002")], Answers()
    )

    assert not other.replayed and other.report_id != first.report_id
    assert await credits(store, "2021000000000002") == 1


async def test_twenty_concurrent_copies_of_one_report_are_applied_once(store: Store) -> None:
    outcomes = await asyncio.gather(
        *(store.record_subscribe_report(report(), [accept(1)], Answers()) for _ in range(20))
    )

    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 19
    assert len({(o.report_id, o.outcome) for o in outcomes}) == 1
    assert not any(o.conflict for o in outcomes)
    assert await credits(store) == 1


async def test_two_replicas_racing_on_the_same_reports_apply_each_once(
    store_factory: StoreFactory,
) -> None:
    one, other = await store_factory(), await store_factory()
    keys = [f"report-{n}" for n in range(10)]
    calls = [
        (replica, key)
        for key in keys
        for replica in (one, other)  # each report sent to both, at once
    ]

    outcomes = await asyncio.gather(
        *(
            replica.record_subscribe_report(report(key), [accept(1, evidence=key)], Answers())
            for replica, key in calls
        )
    )

    for key in keys:
        pair = [o for (_, k), o in zip(calls, outcomes, strict=True) if k == key]
        assert sorted(o.replayed for o in pair) == [False, True], pair
        assert len({(o.report_id, o.outcome) for o in pair}) == 1
    assert await credits(one) == len(keys)
    assert len(await other.consent_events(APP)) == len(keys)
