"""Attempt outcomes of concurrent sends on PostgreSQL, committed together: one UPDATE per batch.

On a small machine what bounds sends on PostgreSQL is the CPU a send costs in Subgate and in
PostgreSQL together, and each statement costs both a round trip and, on its own, a commit with
its WAL flush. An outcome that refunds nothing is one conditional update (only a message still
``sending`` changes), so the outcomes that arrive while a batch is being written form the next
batch (``storage.group_commit``, the rule of the notifications' batches), written by one
``UPDATE ... FROM unnest(...)``: one statement, atomic without BEGIN and COMMIT. Each row still
fires its row triggers in that statement (its attempt, its ``message.updated`` event, its
totals), so every change keeps its event in its own transaction.

Writing an outcome again is harmless: the update skips a message no longer in flight, which is
then read back, as a single finish does. So a batch that fails for any reason (a row the
database refuses, a connection lost before or after its commit reached the server) is written
again one outcome at a time (``outbox.finish_attempt``): one that had landed is read back
unchanged, one that had not lands, one the database refuses fails alone.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.models import AttemptResult, MessageRecord
from storage.postgres import outbox
from storage.postgres.connection import Conn
from storage.postgres.pool_batches import PoolBatches
from storage.sql.dialect import POSTGRES
from storage.sql.outbox import MESSAGE_COLUMNS, MESSAGE_NAMES
from storage.sql.outbox_rows import finish_values, message_from_row

# What ``finish_values`` gives, in its order: the columns an outcome sets, then the message's id.
_SET = (
    ("status", "text"),
    ("next_attempt_at", "bigint"),
    ("platform_code", "text"),
    ("platform_msg", "text"),
    ("sub_code", "text"),
    ("sub_msg", "text"),
    ("last_error", "text"),
    ("updated_at", "bigint"),
    ("sent_at", "bigint"),
)
_COLUMNS = (*_SET, ("id", "text"))
_FINISH_MANY = POSTGRES.render(
    f"UPDATE messages AS m SET {', '.join(f'{name} = v.{name}' for name, _ in _SET)}, "
    "lease_owner = NULL, lease_until = NULL "
    f"FROM unnest({', '.join(f'?::{kind}[]' for _, kind in _COLUMNS)}) "
    f"AS v({', '.join(name for name, _ in _COLUMNS)}) "
    "WHERE m.id = v.id AND m.status = 'sending' "
    f"RETURNING {', '.join(f'm.{name}' for name in MESSAGE_NAMES)}"
)
_MESSAGES_BY_IDS = POSTGRES.render(
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY(?::text[])"
)
Answer = MessageRecord | BaseException


@dataclass(frozen=True, slots=True)
class Finishing:
    """One outcome waiting for its batch, and the caller waiting for the stored message."""

    message_id: str
    params: tuple[Any, ...]  # ``finish_values``'s, the message's id last
    result: AttemptResult
    now: datetime
    future: asyncio.Future[MessageRecord]


class OutcomeBatches(PoolBatches[Finishing]):
    """Writes attempt outcomes that refund nothing in batches on ``pool`` (module docstring)."""

    async def finish(self, message_id: str, result: AttemptResult, now: datetime) -> MessageRecord:
        """The message once ``result`` is stored, or as it was if no longer in flight."""
        _, params = finish_values(message_id, result, now)
        future: asyncio.Future[MessageRecord] = asyncio.get_running_loop().create_future()
        self._group.add(Finishing(message_id, params, result, now, future))
        return await future

    async def write(self, batch: list[Finishing]) -> list[Answer]:
        if len(batch) == 1:
            return [await self._alone(batch[0])]
        try:
            return await self._together(batch)
        except Exception:  # each again alone: see the module docstring
            return list(await asyncio.gather(*(self._alone(f) for f in batch)))

    async def _together(self, batch: list[Finishing]) -> list[Answer]:
        """One statement for the batch (each message once, in id order), then one read of the
        messages it did not change (settled meanwhile, or unknown)."""
        first: dict[str, tuple[Any, ...]] = {}
        for finishing in sorted(batch, key=lambda f: f.message_id):  # stable: arrival order kept
            first.setdefault(finishing.message_id, finishing.params)
        columns = [list(values) for values in zip(*first.values(), strict=True)]

        async def write(connection: Conn) -> dict[str, MessageRecord]:
            rows = await connection.fetch(_FINISH_MANY, *columns)
            stored = {row[0]: message_from_row(row) for row in rows}
            others = [message_id for message_id in first if message_id not in stored]
            if others:
                for row in await connection.fetch(_MESSAGES_BY_IDS, others):
                    stored[row[0]] = message_from_row(row)
            return stored

        stored = await self.run(write, len(batch), atomic=False)
        return [
            stored[f.message_id] if f.message_id in stored else KeyError(f.message_id)
            for f in batch
        ]

    async def _alone(self, finishing: Finishing) -> Answer:
        try:
            return await self.run(
                lambda connection: outbox.finish_attempt(
                    connection, finishing.message_id, finishing.result, finishing.now
                ),
                1,
                atomic=False,
            )
        except Exception as error:
            return error
