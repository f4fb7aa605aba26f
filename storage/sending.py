"""The rules of a send that every backend applies alike: pure, no I/O.

A reservation: whom the ledger allows, the send limit, a ``spend`` per recipient, and what a
replayed idempotency key gets. An attempt: the status its outcome leaves the message in, and the
``refund`` per recipient of a definite failure. Each backend reads what the rules need inside
its transaction (the recipients' consent states, the creation times of the app's recent messages
on the channel) and holds it until commit (SQLite: the single writer; PostgreSQL: row locks and
an advisory lock), so the decisions below hold under concurrency and across restarts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from storage.errors import ConsentRequired, IdempotencyMismatch, WeeklyLimitReached
from storage.ledger import Ident, can_send, empty_state
from storage.models import (
    AttemptOutcome,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    MessageRecord,
    MessageStatus,
    ReserveOutcome,
    SendReservation,
    SkippedRecipient,
)
from storage.timecodec import from_millis

CONSENT_REQUIRED = "consent_required"


def split_by_consent(
    r: SendReservation, states: Mapping[str, ConsentState]
) -> tuple[list[str], list[SkippedRecipient]]:
    """The recipients the ledger allows, in order, and those it does not (with the reason).

    ``states`` holds the recipients' states on (``consent_channel``, ``template_id``); one
    missing is a key without events. Raises ``ConsentRequired`` when ``single`` finds its one
    recipient refused, or when no recipient at all is allowed.
    """
    allowed: list[str] = []
    skipped: list[SkippedRecipient] = []
    for user_id in r.candidates:
        state = states.get(user_id) or empty_state(
            r.app_id, user_id, r.consent_channel, r.template_id
        )
        if r.consent_mode == "none" or can_send(state, r.kind):
            allowed.append(user_id)
        else:
            skipped.append(SkippedRecipient(user_id=user_id, reason=CONSENT_REQUIRED))
    if r.consent_mode == "single" and skipped:
        raise ConsentRequired("the ledger has no consent for this user and template")
    if not allowed:
        raise ConsentRequired("the ledger has no consent for any recipient of this send")
    return allowed, skipped


def window_start(r: SendReservation) -> datetime:
    """Messages created strictly after this count against ``weekly_limit``."""
    return r.created_at - timedelta(seconds=r.limit_window_seconds)


def check_limit(r: SendReservation, created: Sequence[int]) -> None:
    """Raise ``WeeklyLimitReached`` when ``weekly_limit`` messages were created in the window.

    ``created``: epoch milliseconds of every message of the app and channel created after
    ``window_start`` (whatever became of it: the platform counts calls). The next send is allowed
    once enough of the oldest have left the window: ``retry_at`` is when that happens.
    """
    if r.weekly_limit is None or len(created) < r.weekly_limit:
        return
    ordered = sorted(created)
    window = timedelta(seconds=r.limit_window_seconds)
    retry_at = from_millis(ordered[len(ordered) - r.weekly_limit]) + window
    raise WeeklyLimitReached(
        f"at most {r.weekly_limit} {r.channel} sends per app in any "
        f"{_describe(r.limit_window_seconds)}; the next one is allowed at "
        f"{retry_at.isoformat()}",
        retry_at,
        r.created_at,
    )


def _describe(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    if rest == 0:
        return f"{days} day{'' if days == 1 else 's'}"
    return f"{seconds} seconds"


def ledger_event(
    source: SendReservation | MessageRecord,
    user_id: str,
    action: ConsentAction,
    occurred_at: datetime,
) -> ConsentEvent:
    """A send's own ledger event for one recipient (a spend, or its refund), with the message
    as its evidence: a refund finds the spend it gives back by that evidence."""
    message_id = source.message_id if isinstance(source, SendReservation) else source.id
    return ConsentEvent(
        app_id=source.app_id,
        user_id=user_id,
        channel=source.consent_channel,
        template_id=source.template_id,
        action=action,
        occurred_at=occurred_at,
        source=ConsentSource.SEND,
        evidence=f"message:{message_id}",
    )


def not_before(state: ConsentState, now: datetime) -> datetime:
    """When a send's event (a spend or a refund) happened: now, but strictly after the latest
    event of the key, on whose state it was decided.

    The fold orders by ``occurred_at`` (then refunds before spends), so an event stamped at or
    before the state it was decided on would fold out of order: a spend before the refund whose
    credit it took, a refund before its own spend (which then gives nothing back). That happens
    whenever the clock has not moved since (same millisecond) or went back. Stamped strictly
    after, a send's event always sorts last, so the store applies it to the projection as it is
    instead of refolding the key's whole log (several sends to one user in one millisecond did
    that at every second spend, on the single writer). So sends to one user within one
    millisecond are stamped a millisecond apart, each after the decision it records.
    """
    latest = state.updated_at
    if latest is None:
        return now
    return max(now, latest + timedelta(milliseconds=1))


def replay(existing: MessageRecord, reservation: SendReservation) -> ReserveOutcome:
    """A reservation whose idempotency key was used before: the same request again gets its
    message back (nothing new is reserved), another request under that key is refused."""
    if existing.request_sha256 != reservation.request_sha256:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different message")
    return ReserveOutcome(message=existing, replayed=True)


def recipient_key(source: SendReservation | MessageRecord, user_id: str) -> Ident:
    """The ledger key a send checks, spends and refunds consent on for one recipient."""
    return (source.app_id, user_id, source.consent_channel, source.template_id)


def spends(
    r: SendReservation, allowed: Sequence[str], states: Mapping[str, ConsentState]
) -> list[ConsentEvent]:
    """One ``spend`` per allowed recipient, each stamped after the state it was decided on.

    ``states``: the recipients' states read in the reservation's transaction; an allowed
    recipient always has one (a key without events allows nothing to spend).
    """
    return [
        ledger_event(r, user_id, ConsentAction.SPEND, not_before(states[user_id], r.created_at))
        for user_id in allowed
    ]


# What each outcome of an attempt leaves its message in. Only a definite failure (``FAILED``)
# gives the recipients' spends back: an unknown outcome may have been delivered.
_STATUS_AFTER = {
    AttemptOutcome.SENT: MessageStatus.SENT,
    AttemptOutcome.REJECTED: MessageStatus.FAILED,
    AttemptOutcome.EXHAUSTED: MessageStatus.FAILED,
    AttemptOutcome.RETRY: MessageStatus.QUEUED,
    AttemptOutcome.UNKNOWN: MessageStatus.UNKNOWN,
}


def status_after(outcome: AttemptOutcome) -> MessageStatus:
    """The status an attempt's outcome leaves its message in."""
    return _STATUS_AFTER[outcome]


def refunds_spends(status: MessageStatus) -> bool:
    """Does finishing an attempt in flight with this status give the recipients' spends back?
    Only a definite failure does: the message was not delivered and never will be."""
    return status is MessageStatus.FAILED


def refunds(
    message: MessageRecord, states: Mapping[str, ConsentState], now: datetime
) -> list[ConsentEvent]:
    """One ``refund`` per recipient of a failed message, each stamped after its key's latest
    event (its spend is in the log), so each gives back exactly the credit its spend took.

    ``states``: each allowed recipient's current state, read in the finishing transaction.
    """
    return [
        ledger_event(message, user_id, ConsentAction.REFUND, not_before(states[user_id], now))
        for user_id in message.allowed
    ]
