"""The storage interface every backend implements.

The interface speaks in domain operations, not SQL, so that each backend can give the
guarantee in its own way (SQLite: one writer; PostgreSQL: constraints and row locks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from storage.console_queries import ConsoleQueries
from storage.models import (
    AttemptResult,
    ClaimedDelivery,
    ConsentAction,
    ConsentEvent,
    ConsentState,
    ConsentSummary,
    DeliveryHistory,
    DeliveryResult,
    DeliveryRound,
    DestinationBacklog,
    EventHead,
    EventPosition,
    MessageRecord,
    NotificationRecord,
    RecordOutcome,
    RefusalCount,
    ReportAnswer,
    ReportOutcome,
    ReserveOutcome,
    RoundOutcome,
    SendReservation,
    Settlement,
    StoredConsentEvent,
    StoredEvent,
    StoredNotification,
    SubscribeReport,
)

CommitObserver = Callable[[float, int], None]
# Does a destination take this event? Its filters on type, app and kind (pure: a backend may call
# it on its writer thread, or again when a transaction is retried).
EventFilter = Callable[[EventHead], bool]


class Store(ConsoleQueries, Protocol):
    """What the gateway, the ledger and the sender need kept: one interface for every backend,
    so that the server never knows which database it runs on (``open_store`` picks one). The
    operator console's reads are ``ConsoleQueries``."""

    async def close(self) -> None:
        """Finish what is in flight and release every connection; safe to call twice."""

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the store answers a read."""

    def observe_commits(self, observer: CommitObserver) -> None:
        """Call ``observer(seconds, writes)`` after each commit: SQLite's group commits carry
        many writes, PostgreSQL's transactions one each. For the commit-time metric."""

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        """Store a verified notification and the consent events it implies, atomically.

        Idempotent on (app_id, dedupe_key): a second record of the same key stores nothing,
        appends no events and answers ``duplicate=True``. Returns only after the commit is
        durable; raises ``StorageUnavailable`` when it cannot say the notification is stored.
        Usually nothing was; rarely (a failure after the write committed) it was, and a retry
        finds it stored (``duplicate=True``).
        """

    async def get_notification(self, app_id: str, dedupe_key: str) -> StoredNotification | None:
        """The notification stored under (app, dedupe key), or None: what a replay is checked
        against, and what support looks up."""

    async def prune_notifications(self, signed_before: datetime) -> int:
        """Delete notifications whose signed time is before ``signed_before``; return how many.

        Rows without a signed time are kept: nothing else would refuse their replay.
        """

    async def count_notifications(self, app_id: str | None = None) -> int:
        """How many notifications are kept (of one app, or of all): for metrics and checks."""

    async def consent_events(self, app_id: str, user_id: str | None = None) -> list[ConsentEvent]:
        """The app's consent log (or one user's), in the order the events happened: the
        evidence behind every state."""

    async def append_consent_events(
        self, events: Sequence[ConsentEvent], recorded_at: datetime
    ) -> list[ConsentState]:
        """Append to the log and update each key's projection in one transaction."""

    async def record_subscribe_report(
        self, report: SubscribeReport, events: Sequence[ConsentEvent], answer: ReportAnswer
    ) -> ReportOutcome:
        """Keep a client report and apply its events once per (app, idempotency key).

        ``answer(report_id, states)`` builds the JSON answer inside the transaction; a replay
        returns that same answer (``replayed=True``), a different body under the same key is
        reported as ``conflict=True`` and changes nothing. ``answer`` must be pure: a backend
        that retries the transaction (PostgreSQL, on a serialization failure) calls it again.
        """

    async def consent_states(
        self, app_id: str, user_id: str, channel: str | None = None, template_id: str | None = None
    ) -> list[ConsentState]:
        """The user's projection rows (on one channel, of one template, or one key's), ordered
        by channel and template: keys never written are absent."""

    async def consent_summary(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> ConsentSummary | None:
        """One key's summary (what a lookup answers from), or None for a key never written."""

    async def consent_summaries(
        self, app_id: str, channel: str, template_id: str, user_ids: Sequence[str]
    ) -> dict[str, ConsentSummary]:
        """Summaries of one template's keys for these users, by user; users the ledger has
        never heard of are absent."""

    async def consent_history(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> list[StoredConsentEvent]:
        """The key's events in fold order (the order that decides its state)."""

    async def recent_actions(
        self, app_id: str, channel: str, action: ConsentAction, since: datetime
    ) -> int:
        """How many ``action`` events of the app on ``channel`` (any user, any template)
        happened, or were recorded, at or after ``since``."""

    async def reserve_send(
        self, reservation: SendReservation, *, begin: bool = False
    ) -> ReserveOutcome:
        """Spend-once: check limit and consent, append ``spend`` and queue the message, atomically.

        Raises ``ConsentRequired`` (nothing written) when the ledger does not allow the send
        (``consent_mode``: the one recipient, or no recipient at all for ``split``),
        ``WeeklyLimitReached`` (nothing written) when ``weekly_limit`` messages of the app and
        channel were created in the rolling window, ``IdempotencyMismatch`` when the key was
        used with another request; a replay of the same request returns the existing message
        with ``replayed=True`` and reserves nothing (no check, no limit). Each allowed recipient
        gets a ``spend`` event; the message keeps the allowed, the skipped and the warnings.

        ``begin``: a new reservation's first attempt also begins in the same transaction, as
        ``begin_attempt`` by ``lease_owner`` at ``created_at`` would (``begun=True``, the message
        ``sending``), so the caller calls the platform next, one commit sooner. A replay never
        begins anything.
        """

    async def begin_attempt(
        self, message_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> MessageRecord | None:
        """Commit "an attempt is in flight" before calling the platform; None if not ours."""

    async def finish_attempt(
        self, message_id: str, result: AttemptResult, now: datetime
    ) -> MessageRecord:
        """Record the outcome; a definite failure refunds each recipient's spend in the same
        transaction."""

    async def settle_message(
        self, app_id: str, message_id: str, settlement: Settlement
    ) -> MessageRecord | None:
        """A person's verdict on a message of unknown outcome, atomically: the message becomes
        ``settled_delivered`` or ``settled_not_delivered`` with the settlement kept on it (its
        ``message.updated`` event carries it), and each recipient's ledger gets an ``operator``
        event whose evidence names the message, who settled it and why: ``not_delivered`` a
        ``refund`` of the message's spend, ``delivered`` a ``confirm`` that keeps it spent
        (``storage.settlement``).

        None when the app has no message of this id. Raises ``MessageNotUnknown`` (nothing
        written) when the message is not ``unknown``: already settled, or in any other status.
        Of any number of concurrent settles of one message, on any replicas, exactly one wins.
        """

    async def claim_due_messages(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[MessageRecord]:
        """Lease due pending/queued messages to one worker."""

    async def abandon_in_flight(self, now: datetime) -> list[str]:
        """Mark attempts whose lease expired mid-call as ``unknown`` (never retried)."""

    async def get_message(self, app_id: str, message_id: str) -> MessageRecord | None:
        """The app's message of this id, or None: another app's message is never shown."""

    async def count_messages(self, status: str | None = None) -> int:
        """How many messages are in the outbox (in one status, or in all): for metrics."""

    async def message_counts(self) -> dict[tuple[str, str], int]:
        """Messages by (channel, status), for metrics."""

    async def take_users_to_reconcile(self, limit: int) -> list[tuple[str, str]]:
        """The periodic reconciliation's next ``limit`` (app, user) pairs holding a subscription
        or credits on the mini-program channel, and the walk's cursor moved past them.

        The walk goes round every such pair in key order from where the last take stopped,
        starting again from the first at the end (a take holds each pair at most once), so each
        is taken once a cycle. The cursor is kept in the database: a reopened store goes on from
        it, and takes at once, by any processes, never hold the same pairs
        (``storage.sql.reconcile_walk``).
        """

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        """Add to the refusal counters keyed by (app_id, reason)."""

    async def refusal_counts(self) -> list[RefusalCount]:
        """Every refusal counter, by (app_id, reason): what was turned away, for metrics."""

    async def events_after(
        self, app_id: str, after: EventPosition, limit: int, types: Sequence[str]
    ) -> list[StoredEvent]:
        """The app's events of ``types`` after ``after``, oldest first, at most ``limit``.

        Only events whose place in the order is settled are returned: no event can later
        commit before the last one returned, so a reader that goes on from there misses none.
        """

    async def event_by_id(self, event_id: int) -> StoredEvent | None:
        """One event of any app, or None."""

    async def last_event_position(self) -> EventPosition:
        """The position of the newest settled event (``START`` for an empty log)."""

    async def fan_out(self, destination: str, wants: EventFilter, now: datetime, limit: int) -> int:
        """Make a pending delivery to ``destination`` of each settled event after its cursor
        that ``wants``, and move the cursor past every event read; return how many were read
        (0: caught up). A destination never seen starts at the end of the log (its history is
        for replay). One fan-out per destination at a time, across processes: while another
        holds the cursor this one reads nothing and answers 0."""

    async def claim_deliveries(
        self, destination: str, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease due pending deliveries of ``destination`` to ``owner``, oldest event first.

        A delivery whose event has a user is due only when no earlier event of the same
        (app, user) is still pending for this destination (per-user order); a delivery leased
        by another live owner is never claimed, so each attempt has one maker at a time.
        """

    async def finish_deliveries(self, owner: str, results: Sequence[DeliveryResult]) -> int:
        """Keep each attempt and apply its verdict, for the deliveries ``owner`` still holds;
        return how many were applied (an attempt whose lease ran out is kept, nothing else)."""

    async def advance_deliveries(self, work: DeliveryRound, wants: EventFilter) -> RoundOutcome:
        """``finish_deliveries`` of ``work.kept``, then ``fan_out`` and ``claim_deliveries``,
        in one transaction: a user whose verdict is kept here may have the next event claimed
        by the same commit. Each part means what its own method says."""

    async def destination_backlogs(self) -> list[DestinationBacklog]:
        """Every destination with deliveries: counts by state, oldest pending, last error."""

    async def delivery_histories(
        self, destination: str, status: str, limit: int, before_id: int | None = None
    ) -> list[DeliveryHistory]:
        """The destination's deliveries in one state (``failing``: pending with a failed
        attempt; ``dead``; ``pending``; ``delivered``), newest first, each with its attempts."""

    async def replay_delivery(self, destination: str, event_id: int, now: datetime) -> bool:
        """Make the destination's delivery of the event pending and due now, its give-up time
        counted afresh; False when the destination never had that event."""

    async def replay_since(
        self, destination: str, since: datetime, wants: EventFilter, now: datetime
    ) -> int:
        """Replay every event written at or after ``since`` that ``wants``, up to the
        destination's cursor: deliveries made afresh where there were none, the others as
        ``replay_delivery``; return how many."""
