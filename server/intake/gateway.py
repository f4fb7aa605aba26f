"""The notification gateway: raw body in, reply out, nothing acknowledged before it is stored.

    body -> parse_form -> resolve the app (configured apps only) -> verify_notification
         -> handler (events + reply) -> sink.keep (one transaction) -> reply

The sink is where a verified notification is kept: ``StoreSink`` writes it to this process's store;
an intake worker's sink relays it to the process that owns the store (``server/workers/relay.py``).
This module knows nothing of HTTP; ``server/intake/routes.py`` is the aiohttp shell around it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from server.credentials import AppCredentials
from server.errors import SUBGATE_ERRORS, AppMismatch, RequestRefused, UnknownApp
from server.intake.handlers import HandlerRegistry, Reply, notification_kind
from server.intake.life_account_xml import claimed_app_id
from server.intake.refusals import UNKNOWN_APP_KEY, RefusalCounter
from server.runtime.clock import Clock
from storage import Store
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome
from verify import FormBody, MalformedPayload, VerifiedNotification, parse_form, verify_notification

logger = logging.getLogger(__name__)


class NotificationSink(Protocol):
    async def keep(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        """Store the notification and its events atomically and durably (idempotent on its
        key); raise ``StorageUnavailable`` when it cannot say they are stored (then Alipay's
        retry stores them, or finds them stored)."""


class StoreSink:
    """Keeps verified notifications in the store, counting and logging each one: whichever
    process verified it, the one that owns the store counts it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # (app, kind, "stored" | "duplicate") -> count; keys are configured apps only.
        self.accepted: Counter[tuple[str, str, str]] = Counter()
        self.in_flight = 0  # notifications being written now

    async def keep(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        self.in_flight += 1
        try:
            outcome = await self._store.record_notification(record, events)
        finally:
            self.in_flight -= 1
        result = "duplicate" if outcome.duplicate else "stored"
        self.accepted[(record.app_id, record.kind, result)] += 1
        logger.info(
            "notification %s app=%s kind=%s id=%s rule=%s key=%s",
            result,
            record.app_id,
            record.kind,
            record.dedupe_key,
            record.rule,
            record.key_label,
        )
        return outcome


class NotificationGateway:
    def __init__(
        self,
        credentials: Mapping[str, AppCredentials],
        sink: NotificationSink,
        registry: HandlerRegistry,
        refusals: RefusalCounter,
        clock: Clock,
    ) -> None:
        self._credentials = credentials
        self._sink = sink
        self._registry = registry
        self.refusals = refusals
        self._clock = clock

    def app_key(self, app_id: str | None) -> str:
        """The counter key for an app id: itself when configured, else "-" (bounded keys)."""
        return app_id if app_id is not None and app_id in self._credentials else UNKNOWN_APP_KEY

    def count_refusal(self, url_app_id: str | None, error: RequestRefused) -> None:
        """Count a refusal made before the gateway saw the body (its media type, its size)."""
        self.refusals.count(self.app_key(url_app_id), error.code, str(error))

    async def receive(
        self, body: bytes, header_charset: str | None, url_app_id: str | None
    ) -> Reply:
        """Verify, store and answer one notification; raise a ``SubgateError`` to refuse it."""
        app_key = self.app_key(url_app_id)
        try:
            form = parse_form(body, header_charset)
            app = self._resolve_app(form, url_app_id)
            app_key = app.app_id
            return await self._accept(form, body, app)
        except SUBGATE_ERRORS as error:
            self.refusals.count(app_key, error.code, str(error))
            raise

    async def _accept(self, form: FormBody, body: bytes, app: AppCredentials) -> Reply:
        now = self._clock()
        verified = verify_notification(form, app.policy, now)
        kind = notification_kind(verified.fields)
        handler = self._registry.handler_for(kind)
        handled = handler.handle(verified, app, now)
        record = _record(verified, body, app.app_id, kind, handler.name, now)
        await self._sink.keep(record, handled.events)
        return handled.reply

    def _resolve_app(self, form: FormBody, url_app_id: str | None) -> AppCredentials:
        """Keys are only ever those of a configured app that the body names."""
        claimed = _claimed_app_ids(form)
        if url_app_id is not None:
            if url_app_id not in self._credentials:
                raise UnknownApp("the app in the URL is not configured")
            if claimed and url_app_id not in claimed:
                raise AppMismatch("the app in the URL is not the app the notification names")
            return self._credentials[url_app_id]
        if not claimed:
            raise MalformedPayload("the notification names no app_id")
        for app_id in claimed:
            if app_id in self._credentials:
                return self._credentials[app_id]
        raise UnknownApp("the notification is for an app that is not configured")


def _claimed_app_ids(form: FormBody) -> list[str]:
    """auth_app_id before app_id; for life-account messages, the AppId inside the XML."""
    fields = form.fields
    claimed = [
        fields[name].strip() for name in ("auth_app_id", "app_id") if fields.get(name, "").strip()
    ]
    if not claimed and fields.get("service", "").strip():
        xml_app = claimed_app_id(fields.get("biz_content"))
        claimed = [xml_app] if xml_app else []
    return claimed


def _record(
    verified: VerifiedNotification, body: bytes, app_id: str, kind: str, handler: str, now: datetime
) -> NotificationRecord:
    # Every value comes from verify/ and the clock already typed and checked, so the model is
    # built without re-validation (the hot path's most expensive line otherwise). The stores
    # keep times at millisecond precision whatever the datetime carries.
    return NotificationRecord.model_construct(
        app_id=app_id,
        dedupe_key=verified.dedupe_key,
        kind=kind,
        handler=handler,
        raw_body=body,
        charset=verified.charset,
        sign_type=verified.sign_type.value,
        rule=verified.rule.value,
        key_label=verified.key_label,
        occurred_at=verified.occurred_at,
        received_at=now,
    )
