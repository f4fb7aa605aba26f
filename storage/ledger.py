"""The consent ledger's rules: how an append-only log of events folds into current state.

Pure: no I/O. The store keeps a projection per (app, user, channel, template) that must always
equal ``fold(log)``; it applies an event incrementally when it sorts after the last one applied
and refolds the key's whole log when it arrives late. Either way the result is the fold.

Order is ``occurred_at`` (when it happened, not when we heard of it), then a rank that puts
revocations after grants at the same instant (so a revocation wins a tie), then the action,
source and evidence: a content key, so the same events inserted in any order fold to the same
state. An old accept that arrives after a newer cancel therefore folds *before* it and cannot
reopen consent.

The fold does not depend on the template's kind. ``can_send`` reads the kind at lookup time:
long-term templates need status ``subscribed``; one-time (and unregistered) templates need a
credit, one per acceptance, spent by each send.
"""

from __future__ import annotations

from collections.abc import Iterable

from storage.models import (
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    ConsentSummary,
    TemplateKind,
)
from storage.timecodec import to_millis

_RANK = {
    ConsentAction.ACCEPT: 0,
    ConsentAction.FOLLOW: 0,
    ConsentAction.GRANT: 0,
    ConsentAction.REFUND: 1,
    ConsentAction.CONFIRM: 1,
    ConsentAction.SPEND: 2,
    ConsentAction.REJECT: 3,
    ConsentAction.UNFOLLOW: 3,
    ConsentAction.REVOKE: 3,
    ConsentAction.CANCEL: 4,
}
_STATUS_AFTER = {
    ConsentAction.ACCEPT: ConsentStatus.SUBSCRIBED,
    ConsentAction.REJECT: ConsentStatus.REJECTED,
    ConsentAction.CANCEL: ConsentStatus.CANCELLED,
    ConsentAction.FOLLOW: ConsentStatus.FOLLOWED,
    ConsentAction.UNFOLLOW: ConsentStatus.UNFOLLOWED,
    ConsentAction.GRANT: ConsentStatus.GRANTED,
    ConsentAction.REVOKE: ConsentStatus.REVOKED,
}

_CLOSES_A_SPEND = frozenset({ConsentAction.REFUND, ConsentAction.CONFIRM})

EventKey = tuple[int, int, str, str, str, int]
Ident = tuple[str, str, str, str]  # a ledger key: app_id, user_id, channel, template_id


def ident_of(item: ConsentEvent | ConsentState) -> Ident:
    """The ledger key an event belongs to, or a state is the projection of."""
    return (item.app_id, item.user_id, item.channel, item.template_id)


def event_key(event: ConsentEvent, event_id: int) -> EventKey:
    """The total order of the log (``event_id`` only separates byte-identical events)."""
    return (
        to_millis(event.occurred_at),
        _RANK[event.action],
        event.action.value,
        event.source.value,
        event.evidence,
        event_id,
    )


def spend_of(evidence: str) -> str:
    """The spend a refund or confirm is about: its evidence up to the first space
    (``message:<id>``; a settle adds who and why after it, ``storage.settlement``)."""
    return evidence.partition(" ")[0]


def empty_state(app_id: str, user_id: str, channel: str, template_id: str) -> ConsentState:
    """The state of a key without events: the fold of an empty log (nothing granted)."""
    return ConsentState(app_id=app_id, user_id=user_id, channel=channel, template_id=template_id)


def apply(state: ConsentState, event: ConsentEvent, key: EventKey) -> ConsentState:
    """The state after one more event, which must sort after every event already applied."""
    credits, open_spends = state.credits, set(state.open_spends)
    if event.action is ConsentAction.ACCEPT:
        credits += 1
    elif event.action is ConsentAction.CANCEL:
        credits, open_spends = 0, set()
    elif event.action is ConsentAction.SPEND:
        credits = max(0, credits - 1)
        open_spends.add(event.evidence)
    elif event.action in _CLOSES_A_SPEND and spend_of(event.evidence) in open_spends:
        # Only a spend made after the last cancel gives its credit back (a confirm gives
        # nothing, and no later refund can).
        credits += 1 if event.action is ConsentAction.REFUND else 0
        open_spends.discard(spend_of(event.evidence))
    return state.model_copy(
        update={
            "status": _STATUS_AFTER.get(event.action, state.status),
            "credits": credits,
            "open_spends": tuple(sorted(open_spends)),
            "keep": state.keep if event.keep is None else event.keep,
            "refuse": state.refuse if event.refuse is None else event.refuse,
            "updated_at": event.occurred_at,
            "last_source": event.source,
            "last_key": key,
        }
    )


def fold(
    app_id: str,
    user_id: str,
    channel: str,
    template_id: str,
    events: Iterable[tuple[ConsentEvent, int]],
) -> ConsentState:
    """Fold ``(event, event_id)`` pairs, in any order, into the state they imply."""
    state = empty_state(app_id, user_id, channel, template_id)
    keyed = sorted(((event_key(e, i), e) for e, i in events), key=lambda pair: pair[0])
    for key, event in keyed:
        state = apply(state, event, key)
    return state


def can_send(state: ConsentState | ConsentSummary, kind: TemplateKind) -> bool:
    """May a message be sent to this user with this template on this channel right now?"""
    if state.channel == ConsentChannel.LIFE_ACCOUNT:
        return state.status is ConsentStatus.FOLLOWED
    if state.channel != ConsentChannel.MINI_TEMPLATE:
        return state.status is ConsentStatus.GRANTED
    if kind is TemplateKind.LONG_TERM:
        return state.status is ConsentStatus.SUBSCRIBED
    return state.credits > 0
