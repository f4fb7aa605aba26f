"""Reconciliation: ask Alipay what each user subscribed, and record it as ``platform_query`` events.

What an answer of alipay.open.app.messagetemplate.subscribe.query does to the ledger
(docs/reconciliation.md says why):

    subscribe_state "0" (refused)      -> cancel: long-term closes, one-time credits clear
    subscribe_state "1", long-term     -> accept, when the ledger did not already say subscribed
    subscribe_state "1", one-time      -> nothing: the platform cannot say how many sends remain
    template not in the answer         -> nothing

Events are appended only when they change something, so syncing often does not grow the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from server.consent.ledger import ConsentLedger
from server.consent.templates import TemplateRegistry
from server.consent.views import Subscription
from server.credentials import AppCredentials
from server.errors import SUBGATE_ERRORS, PlatformUnavailable
from server.platforms.alipay_classic import OpenApiCaller
from server.platforms.calls import CallOutcome
from storage import Store
from storage.models import (
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    TemplateKind,
)

logger = logging.getLogger(__name__)

QUERY_METHOD = "alipay.open.app.messagetemplate.subscribe.query"
TEMPLATES_PER_QUERY = 3  # the API's own limit


class SyncAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    queried: list[str]
    changes: list[dict[str, str]]
    subscriptions: list[Subscription]


class Reconciler:
    def __init__(
        self,
        store: Store,
        client: OpenApiCaller,
        credentials: Mapping[str, AppCredentials],
        templates: TemplateRegistry,
        ledger: ConsentLedger,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._client = client
        self._credentials = credentials
        self._templates = templates
        self._ledger = ledger
        self._clock = clock

    async def sync_user(
        self, app_id: str, user_id: str, template_ids: Sequence[str] | None = None
    ) -> SyncAnswer:
        """Query every registered template (or the ones given) and record what changed."""
        ids = list(dict.fromkeys(template_ids or self._templates.ids(app_id)))
        relations: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(ids), TEMPLATES_PER_QUERY):
            batch = ids[start : start + TEMPLATES_PER_QUERY]
            relations.update(await self._query(app_id, user_id, batch))
        now = self._clock()
        states = {
            s.template_id: s
            for s in await self._store.consent_states(app_id, user_id, ConsentChannel.MINI_TEMPLATE)
        }
        events = [
            event
            for template_id in ids
            if template_id in relations
            for event in self._events(
                app_id, user_id, template_id, relations[template_id], states.get(template_id), now
            )
        ]
        await self._store.append_consent_events(events, now)
        views = [await self._ledger.subscription(app_id, user_id, t) for t in ids]
        return SyncAnswer(
            user_id=user_id,
            queried=ids,
            changes=[{"template_id": e.template_id, "action": e.action.value} for e in events],
            subscriptions=views,
        )

    async def sync_open_consents(self, users_per_run: int) -> dict[tuple[str, str], str]:
        """One pass of the periodic job: sync the next ``users_per_run`` users of the walk
        round those holding open mini-program consent (``Store.take_users_to_reconcile``).

        Each open user is synced once a cycle, whether or not a sync changes anything. One
        user's failure is recorded and does not stop the others; the walk has moved past every
        user taken, failed or not, so a failed user comes round again next cycle. Returns each
        (app, user) with "ok" or the error code.
        """
        results: dict[tuple[str, str], str] = {}
        for app_id, user_id in await self._store.take_users_to_reconcile(users_per_run):
            try:
                await self.sync_user(app_id, user_id)
                results[(app_id, user_id)] = "ok"
            except SUBGATE_ERRORS as error:
                logger.warning("reconciliation of %s/%s failed: %s", app_id, user_id, error)
                results[(app_id, user_id)] = error.code
        return results

    async def _query(
        self, app_id: str, user_id: str, batch: list[str]
    ) -> dict[str, Mapping[str, Any]]:
        who = {"user_id": user_id} if user_id.startswith("2088") else {"open_id": user_id}
        result = await self._client.call(
            self._credentials[app_id], QUERY_METHOD, {"template_id_list": batch, **who}
        )
        if result.outcome is not CallOutcome.SUCCESS:
            detail = result.sub_code or result.code or result.error or result.outcome.value
            raise PlatformUnavailable(
                f"subscribe.query did not answer ({detail}); nothing recorded"
            )
        relations = result.node.get("subscribe_relations") or []
        return {
            str(r["template_id"]): r
            for r in relations
            if isinstance(r, dict) and str(r.get("template_id")) in batch
        }

    def _events(
        self,
        app_id: str,
        user_id: str,
        template_id: str,
        relation: Mapping[str, Any],
        state: ConsentState | None,
        now: datetime,
    ) -> list[ConsentEvent]:
        action = decide(relation, state, self._kind(app_id, template_id, relation))
        if action is None:
            return []
        evidence = f"query:{template_id}={relation.get('subscribe_state')}@{now.isoformat()}"
        if state is not None and state.updated_at is not None:
            # The answer is the newest word on this key: it must fold after every event it was
            # decided against, even within the same millisecond (an accept at the instant of a
            # cancel would fold before it and change nothing, and be appended again next sync).
            now = max(now, state.updated_at + timedelta(milliseconds=1))
        return [
            ConsentEvent(
                app_id=app_id,
                user_id=user_id,
                channel=ConsentChannel.MINI_TEMPLATE,
                template_id=template_id,
                action=action,
                occurred_at=now,
                source=ConsentSource.PLATFORM_QUERY,
                evidence=evidence,
            )
        ]

    def _kind(self, app_id: str, template_id: str, relation: Mapping[str, Any]) -> TemplateKind:
        kind = self._templates.kind(app_id, ConsentChannel.MINI_TEMPLATE, template_id)
        if kind is TemplateKind.UNKNOWN and relation.get("subscribe_type") == "longterm":
            return TemplateKind.LONG_TERM
        return kind


def decide(
    relation: Mapping[str, Any], state: ConsentState | None, kind: TemplateKind
) -> ConsentAction | None:
    """The one event (or none) a query answer implies, given what the ledger already holds."""
    subscribed_state = str(relation.get("subscribe_state"))
    status = state.status if state else ConsentStatus.NONE
    credits = state.credits if state else 0
    if subscribed_state == "0":
        open_ = status is ConsentStatus.SUBSCRIBED or credits > 0
        return ConsentAction.CANCEL if open_ else None
    if subscribed_state == "1" and kind is TemplateKind.LONG_TERM:
        return None if status is ConsentStatus.SUBSCRIBED else ConsentAction.ACCEPT
    return None
