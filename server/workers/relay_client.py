"""The intake worker's end of the relay: each verified notification sent to the primary, and the
answer awaited until it is stored (or a deadline says to answer 503 instead)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from server.workers.wire import (
    PROTOCOL_VERSION,
    RECORD_FIELDS,
    CoalescedWriter,
    FrameReader,
    RelayError,
    encode_frame,
    record_values,
    relay_answer,
)
from storage.errors import StorageUnavailable
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome

logger = logging.getLogger(__name__)


# A worker answers 503 for a notification the primary has not answered in this long (the
# notification may still be stored; Alipay's re-send is then a duplicate, answered success).
CALL_TIMEOUT_SECONDS = 30.0


class RelayClient(asyncio.Protocol):
    """A worker's end: one connection to the primary, requests answered out of order by seq.

    It is the worker's ``NotificationSink`` and ``RefusalSink``: a call the primary does not
    answer within ``CALL_TIMEOUT_SECONDS`` raises ``StorageUnavailable``, and once the
    connection is lost every waiting and later call does too (the notification is answered 503
    and Alipay sends it again), and ``lost`` is set so the worker can stop.
    """

    def __init__(self) -> None:
        self._frames = FrameReader(2**31)  # the primary is trusted; its answers are small
        self._transport: asyncio.Transport | None = None
        self._out: CoalescedWriter | None = None
        self._waiting: dict[int, tuple[asyncio.Future[Any], float, str]] = {}
        self._seq = 0
        self._expiry: asyncio.TimerHandle | None = None
        self.lost = asyncio.Event()

    @classmethod
    async def connect(cls, path: Path) -> RelayClient:
        """Connect and say hello: raises ``StorageUnavailable`` if the primary refuses us."""
        loop = asyncio.get_running_loop()
        _, client = await loop.create_unix_connection(cls, str(path))
        await client.call("hello", (PROTOCOL_VERSION, RECORD_FIELDS))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._out = CoalescedWriter(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out = None
        if self._expiry is not None:
            self._expiry.cancel()
        self._fail(lambda _: True, "the intake relay to the store is closed")
        self.lost.set()

    def data_received(self, data: bytes) -> None:
        try:
            for seq, ok, value in self._frames.feed(data):
                self._answered(seq, ok, value)
        except RelayError as error:
            logger.error("intake relay: dropping the connection: %s", error)
            self.close()

    def _answered(self, seq: int, ok: object, value: object) -> None:
        """Settle the call ``seq``; a malformed answer leaves it waiting for the close."""
        waiting = self._waiting.get(seq)
        if waiting is None:
            return
        answered, answer = relay_answer(waiting[2], ok, value)
        del self._waiting[seq]
        if waiting[0].done():
            return
        if answered:
            waiting[0].set_result(answer)
        else:
            waiting[0].set_exception(StorageUnavailable(answer))

    async def call(self, op: str, payload: Any) -> Any:
        if self._out is None:
            raise StorageUnavailable("the intake relay to the store is closed")
        self._seq += 1
        frame = encode_frame((self._seq, op, payload))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting[self._seq] = (future, time.monotonic() + CALL_TIMEOUT_SECONDS, op)
        if self._expiry is None:
            self._expiry = loop.call_later(1.0, self._expire)
        self._out.send(frame)
        return await future

    def _expire(self) -> None:
        now = time.monotonic()
        self._fail(lambda deadline: deadline <= now, "the primary did not answer in time")
        loop = asyncio.get_running_loop()
        self._expiry = loop.call_later(1.0, self._expire) if self._waiting else None

    def _fail(self, expired: Callable[[float], bool], message: str) -> None:
        for seq, (future, deadline, _) in list(self._waiting.items()):
            if expired(deadline):
                del self._waiting[seq]
                if not future.done():
                    future.set_exception(StorageUnavailable(message))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def keep(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        wire_events = [event.model_dump(mode="json") for event in events]
        notification_id, duplicate = await self.call("keep", (record_values(record), wire_events))
        return RecordOutcome.model_construct(notification_id=notification_id, duplicate=duplicate)

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        await self.call("refusals", [(app, reason, n) for (app, reason), n in counts.items()])

    async def add_error_answers(self, counts: Mapping[str, float]) -> None:
        await self.call("errors", list(counts.items()))

    async def add_client_cutoffs(self, counts: Mapping[tuple[str, str], int]) -> None:
        await self.call("cutoffs", [(kind, label, n) for (kind, label), n in counts.items()])

    async def ready(self, pid: int) -> None:
        await self.call("ready", pid)
