"""ConsentLedger: the Python API over the ledger. The /v1 HTTP routes are a thin shell over it.

ledger = ConsentLedger(store, templates, clock)
report = SubscribeResult.model_validate(callback_object)
await ledger.report_subscribe_result(app_id, user_id, report, idempotency_key)
await ledger.subscription(app_id, user_id, template_id)      # -> Subscription(can_send=...)
await ledger.lookup(app_id, LookupRequest(template_id=..., user_ids=[...]))
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from server.consent.subscribe_results import Interpretation, SubscribeResult, interpret
from server.consent.templates import TemplateRegistry
from server.consent.views import (
    ConsentChange,
    ConsentUpdate,
    History,
    HistoryEntry,
    LookupAnswer,
    LookupItem,
    LookupRequest,
    SubscribeReportAnswer,
    Subscription,
    SubscriptionList,
)
from server.errors import ChannelNotOptIn, IdempotencyConflict, ValidationFailed
from server.runtime.clock import Clock
from storage import Store
from storage.ledger import can_send
from storage.models import (
    OPT_IN_CHANNELS,
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentSummary,
    SubscribeReport,
    TemplateKind,
)

MAX_CLOCK_SKEW = timedelta(minutes=5)


class ConsentLedger:
    def __init__(self, store: Store, templates: TemplateRegistry, clock: Clock) -> None:
        self._store = store
        self._templates = templates
        self._clock = clock

    def view(self, app_id: str, state: ConsentState | ConsentSummary) -> Subscription:
        """A key's state as the API shows it: ``can_send`` and the credits shown depend on the
        template's kind, which only the configured templates know."""
        kind = self._templates.kind(app_id, state.channel, state.template_id)
        return Subscription(
            template_id=state.template_id,
            channel=ConsentChannel(state.channel),
            kind=kind,
            status=state.status,
            credits=_credits_shown(state, kind),
            can_send=can_send(state, kind),
            keep=state.keep,
            refuse=state.refuse,
            updated_at=state.updated_at,
            last_source=state.last_source,
        )

    async def report_subscribe_result(
        self, app_id: str, user_id: str, report: SubscribeResult, idempotency_key: str
    ) -> SubscribeReportAnswer:
        """Apply a my.requestSubscribeMessage result once per idempotency key."""
        now = self._clock()
        occurred_at = _not_in_future(report.reported_at, now, "reported_at")
        body = _canonical_json(report.model_dump(mode="json", exclude_none=True))
        interpretation = interpret(report)
        events = _report_events(
            app_id, user_id, report, interpretation, occurred_at, idempotency_key
        )

        def answer(report_id: int, states: list[ConsentState]) -> str:
            return self._report_answer(report_id, interpretation, states).model_dump_json()

        outcome = await self._store.record_subscribe_report(
            SubscribeReport(
                app_id=app_id,
                user_id=user_id,
                idempotency_key=idempotency_key,
                body_sha256=_request_digest(user_id, body),
                body=body,
                received_at=now,
            ),
            events,
            answer,
        )
        if outcome.conflict:
            raise IdempotencyConflict("this Idempotency-Key was used with a different report")
        return SubscribeReportAnswer.model_validate_json(outcome.outcome)

    def _report_answer(
        self, report_id: int, interpretation: Interpretation, states: list[ConsentState]
    ) -> SubscribeReportAnswer:
        return SubscribeReportAnswer(
            report_id=report_id,
            rule=interpretation.rule,
            applied=bool(interpretation.decisions),
            reason=interpretation.reason,
            changes=[
                ConsentChange(template_id=d.template_id, action=d.action)
                for d in interpretation.decisions
            ],
            subscriptions=[self.view(state.app_id, state) for state in states],
        )

    async def set_consent(
        self, app_id: str, user_id: str, channel: str, template_id: str, update: ConsentUpdate
    ) -> Subscription:
        """Grant or revoke an opt-in channel (platforms without a consent flow of their own)."""
        if channel not in OPT_IN_CHANNELS:
            raise ChannelNotOptIn(
                f"consent for {channel} comes from the platform, not from PUT; "
                f"opt-in channels are {', '.join(sorted(OPT_IN_CHANNELS))}"
            )
        now = self._clock()
        action = ConsentAction.GRANT if update.status == "granted" else ConsentAction.REVOKE
        event = ConsentEvent(
            app_id=app_id,
            user_id=user_id,
            channel=channel,
            template_id=template_id,
            action=action,
            occurred_at=_not_in_future(update.occurred_at, now, "occurred_at"),
            source=ConsentSource.OPERATOR,
            evidence=update.evidence,
        )
        [state] = await self._store.append_consent_events([event], now)
        return self.view(app_id, state)

    async def subscriptions(self, app_id: str, user_id: str) -> SubscriptionList:
        """Every template and channel the ledger knows for this user (none: an empty list)."""
        states = await self._store.consent_states(app_id, user_id)
        return SubscriptionList(
            user_id=user_id, subscriptions=[self.view(app_id, s) for s in states]
        )

    async def subscription(
        self,
        app_id: str,
        user_id: str,
        template_id: str,
        channel: str = ConsentChannel.MINI_TEMPLATE,
    ) -> Subscription:
        """An unknown user is not an error: the answer says ``can_send: false``."""
        summary = await self._store.consent_summary(app_id, user_id, channel, template_id)
        if summary is None:
            summary = ConsentSummary.empty(channel, template_id)
        return self.view(app_id, summary)

    async def history(
        self,
        app_id: str,
        user_id: str,
        template_id: str,
        channel: str = ConsentChannel.MINI_TEMPLATE,
    ) -> History:
        """Every event of one key, oldest first, each with its source and evidence: why the
        ledger says what it says."""
        events = await self._store.consent_history(app_id, user_id, channel, template_id)
        entries = [
            HistoryEntry(
                action=e.action,
                occurred_at=e.occurred_at,
                recorded_at=e.recorded_at,
                source=e.source,
                evidence=e.evidence,
                keep=e.keep,
                refuse=e.refuse,
            )
            for e in events
        ]
        return History(
            user_id=user_id,
            template_id=template_id,
            channel=ConsentChannel(channel),
            events=entries,
        )

    async def lookup(self, app_id: str, request: LookupRequest) -> LookupAnswer:
        """``can_send`` and ``credits`` for up to 1,000 users in one round trip."""
        user_ids = list(dict.fromkeys(request.user_ids))
        summaries = await self._store.consent_summaries(
            app_id, request.channel, request.template_id, user_ids
        )
        kind = self._templates.kind(app_id, request.channel, request.template_id)
        empty = ConsentSummary.empty(request.channel, request.template_id)
        results = []
        for user_id in user_ids:
            summary = summaries.get(user_id, empty)
            results.append(
                LookupItem(
                    user_id=user_id,
                    can_send=can_send(summary, kind),
                    credits=_credits_shown(summary, kind),
                    status=summary.status,
                )
            )
        return LookupAnswer(
            template_id=request.template_id, channel=request.channel, kind=kind, results=results
        )


def _credits_shown(state: ConsentState | ConsentSummary, kind: TemplateKind) -> int:
    """One-time sends left; a long-term template counts none (it is open or not)."""
    return 0 if kind is TemplateKind.LONG_TERM else state.credits


def _report_events(
    app_id: str,
    user_id: str,
    report: SubscribeResult,
    interpretation: Interpretation,
    occurred_at: datetime,
    idempotency_key: str,
) -> list[ConsentEvent]:
    return [
        ConsentEvent(
            app_id=app_id,
            user_id=user_id,
            channel=ConsentChannel.MINI_TEMPLATE,
            template_id=decision.template_id,
            action=decision.action,
            occurred_at=occurred_at,
            source=ConsentSource.CLIENT_REPORT,
            evidence=f"report:{idempotency_key}",
            keep=report.keep,
            refuse=report.refuse,
        )
        for decision in interpretation.decisions
    ]


def _not_in_future(value: datetime | None, now: datetime, name: str) -> datetime:
    if value is None:
        return now
    if value.tzinfo is None:
        raise ValidationFailed(f"{name} must carry a time zone (e.g. 2026-11-23T08:00:00+08:00)")
    if value - now > MAX_CLOCK_SKEW:
        raise ValidationFailed(f"{name} is in the future")
    return value


def _request_digest(user_id: str, body: str) -> str:
    """What a retry must repeat: the user in the path and the report. Keys are unique per app,
    so the same key and body reported for another user is a conflict, not a replay."""
    return hashlib.sha256(f"{user_id}\n{body}".encode()).hexdigest()


def _canonical_json(data: object) -> str:
    """Key order and spacing do not make two reports different."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
