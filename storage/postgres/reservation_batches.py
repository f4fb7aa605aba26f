"""Send reservations of concurrent requests on PostgreSQL, decided and written together.

A reservation tried without locks (``reservations``) is one read and one conditional write. Each
statement costs a round trip, and a backend the start-up of a statement that touches three
tables and their indexes, on the cores that also sign every call: that, not the WAL flush, is
what a send costs on PostgreSQL beyond SQLite (bench/README.md, "PostgreSQL"). So the
reservations that arrive while a batch is being written form the next batch
(``storage.group_commit``, the rule of the notifications' and the outcomes' batches), and a
batch is one read of every recipient's row and key, each reservation decided in Python as alone
(``reservations.decide``), and one write.

The write keeps every reservation's condition its own: a message is inserted only if every row
its reservation read is still at the version read (locked in one sorted order), and its spends
and saved states only if its message was inserted. So one reservation whose state changed, or
whose key a racing request took, is answered as alone (``StateChanged``, ``KeyTaken``) while the
others are written. Two reservations of a batch that share a recipient's key or an idempotency
key cannot be decided from one read: the later one waits for the next round of the same batch,
which reads what the earlier one wrote.

A batch that fails (a row the database refuses, a lost connection) is tried again one
reservation at a time (``reservations.reserve``), so one the database refuses fails alone. One
that then finds its key taken is answered as a replay, even where the taker was its own batch,
whose COMMIT landed before its answer was lost: a message's id is derived from its key
(``server/sending/sender.py``), so nothing tells a duplicate request from the batch's own write,
and answering it as new would send the message twice. A single reservation's lost answer ends
the same way (503, and the client's retry is a replay).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from storage.models import ReserveOutcome, SendReservation
from storage.postgres import ledger_arrays as ledger
from storage.postgres.connection import Conn, columns_of
from storage.postgres.pool_batches import PoolBatches
from storage.postgres.reservations import (
    HELD_TYPES,
    Decided,
    decide,
    outcome_of,
    prefixed,
    read_of,
    reserve,
)
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import EVENT_COLUMNS, STATE_COLUMNS
from storage.sql.outbox import MESSAGE_COLUMNS, MESSAGE_NAMES

_BIGINT = {"next_attempt_at", "lease_until", "created_at", "updated_at", "sent_at", "settled_at"}
MESSAGE_TYPES = tuple(
    "int" if name == "attempts" else "bigint" if name in _BIGINT else "text"
    for name in MESSAGE_NAMES
)
_EVENT_NAMES = ("id", *EVENT_COLUMNS.split(", "), "recorded_at")


# One row per recipient of each reservation, in the order given: its key's projection row and
# version, an identifier for its new ledger entry, and the message already stored under the
# reservation's key (each looked up by its whole key, as ``reservations`` says why).
_READ_MANY = POSTGRES.render(
    f"SELECT {prefixed('c', ledger.STATE_NAMES)}, c.xmin::text, "
    "CASE WHEN m.id IS NULL THEN nextval(pg_get_serial_sequence('consent_events', 'id')) "
    f"END, {prefixed('m', MESSAGE_NAMES)} "
    f"FROM {ledger.arrays(('text',) * 5)} WITH ORDINALITY "
    "AS k(app_id, user_id, channel, template_id, idempotency_key, n) "
    f"LEFT JOIN LATERAL (SELECT {STATE_COLUMNS}, xmin FROM consents WHERE app_id = k.app_id "
    "AND user_id = k.user_id AND channel = k.channel AND template_id = k.template_id "
    "LIMIT 1) AS c ON true "
    f"LEFT JOIN LATERAL (SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE idempotency_key = k.idempotency_key AND (app_id = k.app_id) IS TRUE LIMIT 1) AS m "
    "ON true ORDER BY k.n"
)
# Each reservation's rows carry its message's id, which ties them to its condition.
_WRITE_MANY = POSTGRES.render(
    f"WITH x AS (SELECT * FROM {ledger.arrays((*HELD_TYPES, 'text'))} "
    f"AS x({ledger.KEY_NAMES}, version, message_id)), "
    f"held AS (SELECT x.message_id FROM consents AS c JOIN x ON {ledger.KEY_MATCH} "
    "WHERE c.xmin = x.version::xid "
    "ORDER BY c.app_id, c.user_id, c.channel, c.template_id FOR UPDATE OF c), "
    f"w AS (SELECT * FROM {ledger.arrays(('text', 'int'))} WITH ORDINALITY "
    "AS w(message_id, expected, n)), "
    "ok AS (SELECT w.message_id FROM w "
    "WHERE w.expected = (SELECT count(*) FROM held WHERE held.message_id = w.message_id)), "
    f"message AS (INSERT INTO messages ({MESSAGE_COLUMNS}) "
    f"SELECT * FROM {ledger.arrays(MESSAGE_TYPES)} AS v({MESSAGE_COLUMNS}) "
    "WHERE v.id IN (SELECT message_id FROM ok) "
    f"ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING {MESSAGE_COLUMNS}), "
    f"spent AS (INSERT INTO consent_events ({', '.join(_EVENT_NAMES)}) OVERRIDING SYSTEM VALUE "
    f"SELECT {prefixed('e', _EVENT_NAMES)} FROM {ledger.arrays((*ledger.EVENT_TYPES, 'text'))} "
    f"AS e({', '.join(_EVENT_NAMES)}, message_id) "
    "WHERE e.message_id IN (SELECT id FROM message)), "
    f"saved AS (UPDATE consents AS c SET {ledger.SET_SAVED} "
    f"FROM {ledger.arrays((*ledger.SAVED_TYPES, 'text'))} "
    f"AS x({STATE_COLUMNS}, changed_by, message_id) "
    f"WHERE {ledger.KEY_MATCH} AND x.message_id IN (SELECT id FROM message)) "
    "SELECT (SELECT count(*) FROM held WHERE held.message_id = w.message_id), "
    f"{prefixed('message', MESSAGE_NAMES)} FROM w LEFT JOIN message ON message.id = w.message_id "
    "ORDER BY w.n"
)
Answer = ReserveOutcome | None | BaseException


@dataclass(frozen=True, slots=True)
class Reserving:
    """One reservation waiting for its batch, and the caller waiting for its answer."""

    reservation: SendReservation
    begin: bool
    future: asyncio.Future[ReserveOutcome | None]

    def keys(self) -> list[tuple[str, ...]]:
        """What no other reservation of its round may touch: its recipients' keys, its own."""
        r = self.reservation
        own = ("message", r.app_id, r.idempotency_key)
        return [own, *((r.app_id, user, r.consent_channel, r.template_id) for user in r.candidates)]


class ReservationBatches(PoolBatches[Reserving]):
    """Reserves sends in batches on the pool (module docstring). Only reservations that
    ``reservations.takes`` may be given."""

    async def reserve(self, reservation: SendReservation, *, begin: bool) -> ReserveOutcome | None:
        """As ``reservations.reserve`` answers and raises, decided with its batch."""
        future: asyncio.Future[ReserveOutcome | None] = asyncio.get_running_loop().create_future()
        self._group.add(Reserving(reservation, begin, future))
        return await future

    async def write(self, batch: list[Reserving]) -> list[Answer]:
        answers: dict[int, Answer] = {}
        waiting = list(enumerate(batch))
        while waiting:
            now, waiting = _round(waiting)
            items = [item for _, item in now]
            if len(items) == 1:
                written: Sequence[Answer] = [await self._alone(items[0])]
            else:
                written = await self._together(items)
            answers.update(zip((n for n, _ in now), written, strict=True))
        return [answers[n] for n in range(len(batch))]

    async def _together(self, items: list[Reserving]) -> Sequence[Answer]:
        try:
            return await self.run(
                lambda connection: reserve_many(connection, items), len(items), atomic=False
            )
        except Exception:  # each again alone: see the module docstring
            return await asyncio.gather(*(self._alone(item) for item in items))

    async def _alone(self, item: Reserving) -> Answer:
        r = item.reservation
        try:
            return await self.run(lambda c: reserve(c, r, begin=item.begin), 1, atomic=False)
        except Exception as error:
            return error


Numbered = tuple[int, Reserving]  # a reservation and its place in the batch


def _round(waiting: list[Numbered]) -> tuple[list[Numbered], list[Numbered]]:
    """The reservations of this round (no key shared) and those that wait for the next."""
    taken: set[tuple[str, ...]] = set()
    now: list[Numbered] = []
    later: list[Numbered] = []
    for numbered in waiting:
        keys = numbered[1].keys()
        if taken.isdisjoint(keys):
            taken.update(keys)
            now.append(numbered)
        else:
            later.append(numbered)
    return now, later


async def reserve_many(connection: Conn, items: list[Reserving]) -> list[Answer]:
    """One read, each decided, one write; each reservation's answer in order."""
    keys = [(i.reservation, user) for i in items for user in i.reservation.candidates]
    rows = await connection.fetch(
        _READ_MANY,
        *columns_of(
            [
                (r.app_id, user, r.consent_channel, r.template_id, r.idempotency_key)
                for r, user in keys
            ],
            5,
        ),
    )
    answers: list[Answer] = []
    decided: dict[str, tuple[int, Decided]] = {}
    start = 0
    for item in items:
        users = list(item.reservation.candidates)
        read = read_of(users, rows[start : start + len(users)])
        start += len(users)
        try:
            answer = decide(item.reservation, read, begin=item.begin)
        except Exception as refusal:  # the consent rules' refusal is this one's alone
            answers.append(refusal)
            continue
        if isinstance(answer, Decided):  # answered by the write
            decided[item.reservation.message_id] = (len(answers), answer)
            answer = None
        answers.append(answer)
    if decided:
        await _write_many(connection, items, decided, answers)
    return answers


async def _write_many(
    connection: Conn,
    items: list[Reserving],
    decided: dict[str, tuple[int, Decided]],
    answers: list[Answer],
) -> None:
    """The one write of the decided reservations; each one's answer put in ``answers``."""
    # Messages in key order: two batches inserting the same keys wait for each other in one
    # order, never in a cycle (the recipients' rows are locked in order by the statement).
    ids = sorted(decided, key=lambda m: (decided[m][1].message[2], decided[m][1].message[1]))
    held, events, after = [], [], []
    for message_id, (_, d) in decided.items():
        held += [(*row, message_id) for row in d.expected]
        events += [(*row, message_id) for row in d.events]
        after += [(*row, message_id) for row in d.after]
    rows = await connection.fetch(
        _WRITE_MANY,
        *columns_of(held, len(HELD_TYPES) + 1),
        ids,
        [len(decided[m][1].expected) for m in ids],
        *columns_of([decided[m][1].message for m in ids], len(MESSAGE_TYPES)),
        *columns_of(events, len(ledger.EVENT_TYPES) + 1),
        *columns_of(after, len(ledger.SAVED_TYPES) + 1),
    )
    for message_id, row in zip(ids, rows, strict=True):
        n, d = decided[message_id]
        try:
            answers[n] = outcome_of(d, row[0], row[1:], begin=items[n].begin)
        except Exception as why:  # StateChanged or KeyTaken: this one's alone
            answers[n] = why
