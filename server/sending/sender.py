"""MessageSender: the one way anything is sent. Consent check -> signed call -> recorded outcome.

    view = await sender.send(app_id, body, idempotency_key)

1. The channel validates the body (422, nothing reserved).
2. One transaction: idempotency check, consent check, ``spend`` event, outbox row, and the first
   attempt begun (``sending``): one commit before the platform is called, not two.
3. The platform is called, then the outcome is committed (a retry commits ``sending`` again
   before its call):
   sent; failed (definite: the credit is refunded in the same transaction); queued (transient:
   the outbox worker retries with backoff, across restarts); unknown (unverifiable: the credit
   stays spent and the message is never retried, so it can never be delivered twice).
   A channel with ``retry_transient = False`` (label sends: no idempotency key, a weekly quota)
   settles a transient answer as unknown too, unless the platform was never reached at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.errors import UnknownChannel
from server.platforms.calls import CallOutcome, CallResult
from server.runtime.clock import Clock
from server.sending.channels.base import PreparedSend, RecentActivityWarning, SendChannel
from server.sending.messages import MessageView
from server.sending.settle import SettleRequest, settle_message
from server.settings import OutboxSettings
from storage import Store
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    MessageRecord,
    MessageStatus,
    SendReservation,
)

NOT_RETRIED = "the platform may have acted on it and this channel is never retried automatically"
# aiohttp's errors raised before a request was written: the platform never saw it.
_CONNECT_ERRORS = frozenset(
    {
        "ClientConnectorError",
        "ClientConnectorDNSError",
        "ClientConnectorSSLError",
        "ClientConnectorCertificateError",
    }
)
PreSendCheck = Callable[[str, str, PreparedSend], Awaitable[None]]


class MessageSender:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, SendChannel],
        credentials: Mapping[str, AppCredentials],
        templates: TemplateRegistry,
        settings: OutboxSettings,
        clock: Clock,
        before_reserve: PreSendCheck | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._credentials = credentials
        self._templates = templates
        self._settings = settings
        self._clock = clock
        self._before_reserve = before_reserve
        self.owner = f"subgate-{secrets.token_hex(6)}"  # this process, as lease owner
        self._in_flight: dict[str, asyncio.Event] = {}  # message id -> set when its attempt ends
        # Every send from its reservation to its outcome: held here so that no task is collected
        # while it runs, its caller gone or not (``_to_the_end``).
        self._carried: set[asyncio.Task[MessageView]] = set()

    async def send(self, app_id: str, body: Mapping[str, Any], idempotency_key: str) -> MessageView:
        """Send ``body`` (a channel's request body) if, and only if, the ledger allows it.

        The channel validates the body, then one transaction checks consent, spends a one-time
        credit and writes the outbox row; the platform call follows (or the outbox worker makes
        it). The same ``idempotency_key`` always answers the same message, however often and
        however concurrently it is retried, and spends at most once.
        """
        channel = self._channel(body.get("channel"))
        message_id = _message_id(app_id, idempotency_key)
        prepared = channel.prepare(app_id, body, self._templates, message_id)
        warnings = prepared.warnings
        checks_first = self._before_reserve is not None or prepared.warn_if_recent
        if checks_first and not await self._known(app_id, message_id):
            if self._before_reserve is not None:
                await self._before_reserve(app_id, channel.name, prepared)
            warnings += await self._recent_activity(app_id, prepared.warn_if_recent)
        now = self._clock()
        reservation = SendReservation(
            message_id=message_id,
            app_id=app_id,
            idempotency_key=idempotency_key,
            request_sha256=_request_digest(body),
            channel=channel.name,
            user_id=prepared.user_id,
            template_id=prepared.template_id,
            kind=prepared.kind,
            payload=json.dumps(prepared.payload, ensure_ascii=False),  # in the channel's order
            lease_owner=self.owner,
            lease_until=now + self._lease(),
            created_at=now,
            recipients=prepared.recipients,
            consent_mode=prepared.consent_mode,
            ledger_channel=prepared.ledger_channel,
            weekly_limit=prepared.weekly_limit,
            limit_window_seconds=prepared.limit_window_seconds,
            warnings=warnings,
        )
        return await self._to_the_end(self._reserve_and_attempt(reservation))

    async def settle(
        self, app_id: str, message_id: str, verdict: SettleRequest, settled_by: str
    ) -> MessageView:
        """Settle an ``unknown`` message as a person decided (``server.sending.settle``)."""
        now = self._clock()
        return await settle_message(self._store, app_id, message_id, verdict, settled_by, now)

    async def _reserve_and_attempt(self, reservation: SendReservation) -> MessageView:
        outcome = await self._store.reserve_send(reservation, begin=True)
        if outcome.replayed:
            return MessageView.of(await self._settled(outcome.message))
        return MessageView.of(await self.attempt(outcome.message, begun=outcome.begun))

    async def _to_the_end(self, send: Coroutine[Any, Any, MessageView]) -> MessageView:
        """Run a send to its recorded outcome even if its caller is cancelled meanwhile.

        The reservation may commit after the caller is gone, and it begins the attempt: left
        there, the message could only end ``unknown``, its credit spent and never called. So
        the send goes on in a task of its own; the caller just stops waiting for it.
        """
        task = asyncio.ensure_future(send)
        self._carried.add(task)
        task.add_done_callback(self._carried_done)
        return await asyncio.shield(task)

    def _carried_done(self, task: asyncio.Task[MessageView]) -> None:
        self._carried.discard(task)
        if not task.cancelled():
            task.exception()  # a refusal whose caller went away: nobody is left to answer

    async def _recent_activity(
        self, app_id: str, checks: tuple[RecentActivityWarning, ...]
    ) -> tuple[str, ...]:
        found: list[str] = []
        for check in checks:
            since = self._clock() - check.within
            if await self._store.recent_actions(app_id, check.channel, check.action, since):
                found.append(check.warning)
        return tuple(found)

    async def _known(self, app_id: str, message_id: str) -> bool:
        """A replay is answered from the outbox, whatever the platform would say now."""
        return await self._store.get_message(app_id, message_id) is not None

    async def _settled(self, message: MessageRecord) -> MessageRecord:
        """A replay gives the same answer as the original: if this process is attempting the
        message right now, wait for that attempt to end, then answer what is stored."""
        running = self._in_flight.get(message.id)
        if running is None and message.status not in (MessageStatus.PENDING, MessageStatus.SENDING):
            return message
        if running is not None:
            await running.wait()
        return await self._store.get_message(message.app_id, message.id) or message

    async def attempt(self, message: MessageRecord, *, begun: bool = False) -> MessageRecord:
        """One attempt of a message this process holds the lease of. ``begun``: the attempt is
        already committed as in flight (``sending``), by the reservation's own transaction."""
        if message.id in self._in_flight:  # already being attempted here
            return await self._settled(message)
        done = self._in_flight[message.id] = asyncio.Event()
        try:
            return await self._attempt(message, begun)
        finally:
            del self._in_flight[message.id]
            done.set()

    async def _attempt(self, message: MessageRecord, begun: bool) -> MessageRecord:
        if not begun:
            now = self._clock()
            started = await self._store.begin_attempt(
                message.id, self.owner, now, now + self._lease()
            )
            if started is None:  # another worker has it, or it is already final
                return message
            message = started
        result = await self._deliver(message)
        return await self._store.finish_attempt(
            message.id, self._attempt_result(message, result), self._clock()
        )

    async def _deliver(self, message: MessageRecord) -> CallResult:
        channel = self._channel(message.channel)
        app = self._credentials[message.app_id]
        return await channel.deliver(app, json.loads(message.payload), message.allowed)

    def _attempt_result(self, message: MessageRecord, result: CallResult) -> AttemptResult:
        outcome = {
            CallOutcome.SUCCESS: AttemptOutcome.SENT,
            CallOutcome.REJECTED: AttemptOutcome.REJECTED,
            CallOutcome.UNKNOWN: AttemptOutcome.UNKNOWN,
            CallOutcome.TRANSIENT: AttemptOutcome.RETRY,
            CallOutcome.THROTTLED: AttemptOutcome.RETRY,
        }[result.outcome]
        error = result.error
        if (
            result.outcome is CallOutcome.TRANSIENT
            and not self._channel(message.channel).retry_transient
            and not _never_reached(result)
        ):
            outcome = AttemptOutcome.UNKNOWN
            error = f"{result.error or 'transient'}; {NOT_RETRIED}"
        next_attempt_at = None
        if outcome is AttemptOutcome.RETRY:
            backoff = self._settings.retry_backoff_seconds
            if message.attempts > len(backoff):
                outcome = AttemptOutcome.EXHAUSTED
            else:
                delay = backoff[message.attempts - 1]
                if result.outcome is CallOutcome.THROTTLED:  # a rate limit: wait for its window
                    delay = max(delay, self._settings.throttle_delay_seconds)
                next_attempt_at = self._clock() + timedelta(seconds=delay)
        return AttemptResult(
            outcome=outcome,
            platform_code=result.code,
            platform_msg=result.msg,
            sub_code=result.sub_code,
            sub_msg=result.sub_msg,
            error=error,
            next_attempt_at=next_attempt_at,
        )

    def _channel(self, name: object) -> SendChannel:
        channel = self._channels.get(name) if isinstance(name, str) else None
        if channel is None:
            raise UnknownChannel(f"channel must be one of {', '.join(sorted(self._channels))}")
        return channel

    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_seconds)


def _never_reached(result: CallResult) -> bool:
    """A transient failure to connect at all: nothing was sent, so a retry cannot duplicate."""
    return result.error in _CONNECT_ERRORS


def _message_id(app_id: str, idempotency_key: str) -> str:
    """Derived from the key (unique per app), so a replay is known before anything is done."""
    digest = hashlib.sha256(f"{app_id}\n{idempotency_key}".encode()).hexdigest()
    return f"msg_{digest[:24]}"


def _request_digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
