"""The fold rules of the consent ledger (pure) and the projection the store keeps of them."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import Store
from storage.ledger import can_send, fold
from storage.models import (
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    TemplateKind,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
A = ConsentAction


def event(
    action: ConsentAction,
    minute: int,
    *,
    evidence: str = "",
    channel: str = ConsentChannel.MINI_TEMPLATE,
    source: ConsentSource = ConsentSource.CLIENT_REPORT,
    user: str = "2088A",
    template: str = "T1",
) -> ConsentEvent:
    return ConsentEvent(
        app_id="app",
        user_id=user,
        channel=channel,
        template_id=template,
        action=action,
        occurred_at=T0 + timedelta(minutes=minute),
        source=source,
        evidence=evidence or f"{action.value}@{minute}",
    )


def folded(*events: ConsentEvent) -> ConsentState:
    return fold(
        "app", "2088A", ConsentChannel.MINI_TEMPLATE, "T1", [(e, i) for i, e in enumerate(events)]
    )


def test_each_one_time_acceptance_grants_one_credit_and_each_send_spends_one() -> None:
    state = folded(event(A.ACCEPT, 1), event(A.ACCEPT, 2), event(A.SPEND, 3, evidence="m1"))

    assert (state.status, state.credits) == (ConsentStatus.SUBSCRIBED, 1)
    assert can_send(state, TemplateKind.ONE_TIME) and can_send(state, TemplateKind.UNKNOWN)


def test_an_old_accept_arriving_after_a_newer_cancel_does_not_reopen_consent() -> None:
    cancel, late_accept = event(A.CANCEL, 10), event(A.ACCEPT, 5)

    state = folded(cancel, late_accept)  # recorded in this order

    assert (state.status, state.credits) == (ConsentStatus.CANCELLED, 0)
    assert not can_send(state, TemplateKind.LONG_TERM)
    assert not can_send(state, TemplateKind.ONE_TIME)


def test_at_the_same_instant_a_revocation_wins() -> None:
    state = folded(event(A.CANCEL, 1), event(A.ACCEPT, 1))

    assert state.status is ConsentStatus.CANCELLED


def test_a_refund_gives_back_only_a_spend_made_after_the_last_cancel() -> None:
    kept = folded(
        event(A.ACCEPT, 1), event(A.SPEND, 2, evidence="m1"), event(A.REFUND, 3, evidence="m1")
    )
    voided = folded(
        event(A.ACCEPT, 1),
        event(A.SPEND, 2, evidence="m1"),
        event(A.CANCEL, 3),
        event(A.REFUND, 4, evidence="m1"),
    )
    twice = folded(
        event(A.ACCEPT, 1),
        event(A.SPEND, 2, evidence="m1"),
        event(A.REFUND, 3, evidence="m1"),
        event(A.REFUND, 4, evidence="m1"),
    )

    assert (kept.credits, voided.credits, twice.credits) == (1, 0, 1)


def test_a_rejection_keeps_credits_already_granted_but_closes_a_long_term_template() -> None:
    state = folded(event(A.ACCEPT, 1), event(A.REJECT, 2))

    assert state.status is ConsentStatus.REJECTED and state.credits == 1
    assert can_send(state, TemplateKind.ONE_TIME)
    assert not can_send(state, TemplateKind.LONG_TERM)


@pytest.mark.parametrize(
    ("channel", "actions", "allowed"),
    [
        (ConsentChannel.LIFE_ACCOUNT, [A.FOLLOW], True),
        (ConsentChannel.LIFE_ACCOUNT, [A.FOLLOW, A.UNFOLLOW], False),
        (ConsentChannel.JYM_PUSH, [A.GRANT], True),
        (ConsentChannel.WORKCORE, [A.GRANT, A.REVOKE], False),
        (ConsentChannel.JYM_PUSH, [], False),
    ],
)
def test_channels_without_templates_follow_their_own_status(
    channel: str, actions: list[ConsentAction], allowed: bool
) -> None:
    events = [(event(a, m, channel=channel), m) for m, a in enumerate(actions)]

    state = fold("app", "2088A", channel, "T1", events)

    assert can_send(state, TemplateKind.ONE_TIME) is allowed


def test_keep_and_refuse_flags_follow_the_latest_report_that_carried_them() -> None:
    first = event(A.ACCEPT, 1).model_copy(update={"keep": True})
    second = event(A.ACCEPT, 2)

    state = folded(first, second)

    assert (state.keep, state.refuse) == (True, False)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(list(ConsentAction)), st.integers(0, 5), st.sampled_from(["m1", "m2", ""])
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.randoms(use_true_random=False))
def test_the_same_events_in_any_order_fold_to_the_same_state(
    spec: list[tuple[ConsentAction, int, str]], rnd: random.Random
) -> None:
    events = [event(action, minute, evidence=evidence) for action, minute, evidence in spec]
    shuffled = events[:]
    rnd.shuffle(shuffled)

    in_order = fold(
        "app", "2088A", ConsentChannel.MINI_TEMPLATE, "T1", [(e, i) for i, e in enumerate(events)]
    )
    reordered = fold(
        "app", "2088A", ConsentChannel.MINI_TEMPLATE, "T1", [(e, i) for i, e in enumerate(shuffled)]
    )

    assert in_order.model_dump(exclude={"last_key"}) == reordered.model_dump(exclude={"last_key"})
    assert in_order.credits >= 0


async def assert_projection_is_the_fold(
    store: Store, user: str = "2088A", template: str = "T1"
) -> ConsentState:
    [state] = await store.consent_states("app", user, ConsentChannel.MINI_TEMPLATE, template)
    history = await store.consent_history("app", user, ConsentChannel.MINI_TEMPLATE, template)
    refolded = fold(
        "app", user, ConsentChannel.MINI_TEMPLATE, template, [(e, e.id) for e in history]
    )
    assert state == refolded
    summary = await store.consent_summary("app", user, ConsentChannel.MINI_TEMPLATE, template)
    assert summary == summary_of(state)
    return state


def summary_of(state: ConsentState) -> ConsentSummary:
    """What a lookup must read for ``state``: the same values, with the same types."""
    return ConsentSummary(
        state.channel,
        state.template_id,
        state.status,
        state.credits,
        state.keep,
        state.refuse,
        state.updated_at,
        state.last_source,
    )


async def test_the_store_projection_equals_the_fold_whatever_the_arrival_order(
    store: Store,
) -> None:
    events = [
        event(A.ACCEPT, 1),
        event(A.ACCEPT, 2),
        event(A.SPEND, 3, evidence="m1"),
        event(A.REFUND, 4, evidence="m1"),
        event(A.CANCEL, 6),
        event(A.ACCEPT, 5),
        event(A.ACCEPT, 7),
    ]
    random.Random(7).shuffle(events)

    for one in events:  # one at a time: many arrive late and force a refold
        await store.append_consent_events([one], T0)

    state = await assert_projection_is_the_fold(store)
    assert (state.status, state.credits) == (ConsentStatus.SUBSCRIBED, 1)


async def test_concurrent_appends_for_one_user_keep_the_projection_exact(store: Store) -> None:
    events = [event(A.ACCEPT, m, evidence=f"r{m}") for m in range(40)] + [event(A.CANCEL, 20)]

    await asyncio.gather(*(store.append_consent_events([e], T0) for e in events))

    state = await assert_projection_is_the_fold(store)
    assert state.credits == 19  # the accepts after the cancel at minute 20


async def test_history_is_in_fold_order_with_sources_and_evidence(store: Store) -> None:
    await store.append_consent_events([event(A.CANCEL, 9, source=ConsentSource.PLATFORM_QUERY)], T0)
    await store.append_consent_events(
        [event(A.ACCEPT, 3, evidence="report:1")], T0 + timedelta(hours=1)
    )

    history = await store.consent_history("app", "2088A", ConsentChannel.MINI_TEMPLATE, "T1")

    assert [(e.action, e.source, e.evidence) for e in history] == [
        (A.ACCEPT, ConsentSource.CLIENT_REPORT, "report:1"),
        (A.CANCEL, ConsentSource.PLATFORM_QUERY, "cancel@9"),
    ]
    assert history[0].recorded_at == T0 + timedelta(hours=1)


async def test_bulk_summaries_are_each_users_state_and_skip_unknown_users(store: Store) -> None:
    await store.append_consent_events([event(A.ACCEPT, 1, user=f"u{i}") for i in range(3)], T0)
    await store.append_consent_events([event(A.SPEND, 2, user="u2", evidence="m1")], T0)
    await store.append_consent_events(
        [event(A.CANCEL, 3, user="u0", source=ConsentSource.PLATFORM_QUERY)], T0
    )

    found = await store.consent_summaries(
        "app", ConsentChannel.MINI_TEMPLATE, "T1", ["u0", "u2", "nobody"]
    )

    assert sorted(found) == ["u0", "u2"]
    for user in found:
        [state] = await store.consent_states("app", user, ConsentChannel.MINI_TEMPLATE, "T1")
        assert found[user] == summary_of(state)
    assert (found["u0"].status, found["u0"].last_source) == (
        ConsentStatus.CANCELLED,
        ConsentSource.PLATFORM_QUERY,
    )
    assert (found["u2"].credits, found["u2"].updated_at) == (0, T0 + timedelta(minutes=2))


async def test_a_summary_carries_the_flags_as_booleans(store: Store) -> None:
    flagged = event(A.REJECT, 1).model_copy(update={"keep": True, "refuse": True})
    await store.append_consent_events([flagged], T0)

    state = await assert_projection_is_the_fold(store)
    summary = await store.consent_summary("app", "2088A", ConsentChannel.MINI_TEMPLATE, "T1")

    assert summary is not None
    assert summary.keep is True and summary.refuse is True  # not 1: the API answers booleans
    assert summary.status is ConsentStatus.REJECTED
    assert summary.updated_at == state.updated_at == T0 + timedelta(minutes=1)


async def test_the_summary_of_a_key_never_written_is_none(store: Store) -> None:
    await store.append_consent_events([event(A.ACCEPT, 1)], T0)

    assert await store.consent_summary("app", "2088A", ConsentChannel.MINI_TEMPLATE, "T2") is None
    assert await store.consent_summary("app", "2088B", ConsentChannel.MINI_TEMPLATE, "T1") is None
    assert await store.consent_summary("app", "2088A", ConsentChannel.JYM_PUSH, "T1") is None
