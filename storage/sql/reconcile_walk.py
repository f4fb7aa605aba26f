"""The periodic reconciliation's walk, alike on both backends: a mixin of each store.

The walk goes round the users holding open mini-program consent in (app, user) order,
``limit`` users a take, and starts again from the first at the end: every open user is taken
once a cycle, however many of their syncs change nothing. (An order by when a key last changed
took the same users at every run: a sync that changes nothing does not change the key.) Where
the walk is lives in the database (``reconcile_cursor``), so a restart goes on from there and
every process of a PostgreSQL database shares the one walk.

A take reads the cursor and the users after it, then moves the cursor to the last of them only
if no other take moved it meanwhile (compare and set on its ``moves``); one that did makes this
take read again, after theirs. The cursor moves when the users are taken, before they are
synced: a sync that fails, or a process that stops mid-run, leaves its users for the next cycle,
and two runs at once never sync the same users.

A backend supplies ``_fetch`` (as for every shared read) and ``_write_one``, one write
statement committed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.sql.rows import Row
from storage.sql.statements import Statements

UserKey = tuple[str, str]  # (app_id, user_id)
# Takes by other processes that may land between this one's read and its move before it gives
# its turn up: each moved the walk on, so giving up skips no one.
_TRIES = 3


class ReconcileWalk:
    """``take_users_to_reconcile``: the next users of the walk, the cursor moved past them."""

    _sql: Statements

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        raise NotImplementedError

    async def _write_one(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement in a transaction of its own; how many rows it changed."""
        raise NotImplementedError

    async def take_users_to_reconcile(self, limit: int) -> list[UserKey]:
        """The next ``limit`` (app, user) pairs holding open mini-program consent after the
        cursor, in key order and wrapping to the first at the end (each pair at most once); the
        cursor is moved to the last of them. Empty when no user holds any, or when other takes
        kept moving the cursor (``_TRIES``)."""
        walk = self._sql.reconcile
        for _ in range(_TRIES):
            [(app_id, user_id, moves)] = await self._fetch(walk.cursor, ())
            users = await self._open_users_from((app_id, user_id), limit)
            if not users:
                return []
            if await self._write_one(walk.move_cursor, (*users[-1], moves)):
                return users
        return []

    async def _open_users_from(self, cursor: UserKey, limit: int) -> list[UserKey]:
        """The open users after ``cursor``; fewer than ``limit`` (the end of the cycle): then
        the first ones up to ``cursor`` too, so that a take never holds a user twice."""
        walk = self._sql.reconcile
        rows = list(await self._fetch(walk.open_users_after, (*cursor, limit)))
        if len(rows) < limit:
            rows += await self._fetch(walk.open_users_up_to, (*cursor, limit - len(rows)))
        return [(row[0], row[1]) for row in rows]
