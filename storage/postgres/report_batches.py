"""Subscribe reports of concurrent requests on PostgreSQL, committed together.

A report alone (``notifications.record_report``) is a transaction of its own: its insert, the
lock of each key it touches (creating the row of a new key), each event and saved state, its
answer, and the COMMIT, each a round trip, and on a burst of reports (a promotion's page asking
every visitor to subscribe) those round trips are what bounds them (bench/README.md,
"PostgreSQL"). So the reports that arrive while a batch is being committed form the next batch
(``storage.group_commit``, the rule of the notifications' batches), written in one transaction:

1. every report inserted by one statement, ``ON CONFLICT DO NOTHING RETURNING``: the keys it
   returns are new; the others were used before, and their first answers are read back by one
   more (a replay, or a conflict when the body differs);
2. the projection row of every key the new reports touch locked in one sorted order, new keys'
   rows created (``consents.lock_many``), so two replicas' batches cannot deadlock;
3. each new report's events appended in arrival order, each report answered from the states its
   own events left, exactly as alone (``consents.append_in_order``);
4. every answer saved by one statement.

A key repeated within the batch is a replay of its first report there. A batch that fails is
written again one report at a time, so one the database refuses fails alone. If the batch's
COMMIT landed but its answer was lost, a report written again alone finds its key used: when the
stored report is the one this batch inserted (the same id: ids come from the table's sequence,
so no other insert ever has it), it is answered as its own, not as a replay.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from storage.ledger import ident_of
from storage.models import ConsentEvent, ReportAnswer, ReportOutcome, SubscribeReport
from storage.postgres.connection import Conn, columns_of
from storage.postgres.consents import append_in_order, lock_many
from storage.postgres.notifications import record_report
from storage.postgres.pool_batches import PoolBatches
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import replayed_report, report_row
from storage.timecodec import to_millis

logger = logging.getLogger(__name__)
Key = tuple[str, str]  # (app_id, idempotency_key)
_COLUMNS = "app_id, user_id, idempotency_key, body_sha256, body, received_at"
_INSERT_MANY = POSTGRES.render(  # the answer is set once it is known (step 4)
    f"INSERT INTO subscribe_reports ({_COLUMNS}, outcome) SELECT *, '' FROM "
    "unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[]) "
    "ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING app_id, idempotency_key, id"
)
_SEEN = POSTGRES.render(
    "SELECT r.app_id, r.idempotency_key, r.id, r.body_sha256, r.outcome "
    "FROM unnest(?::text[], ?::text[]) AS k(app_id, idempotency_key) "
    "JOIN LATERAL (SELECT * FROM subscribe_reports WHERE app_id = k.app_id "
    "AND idempotency_key = k.idempotency_key LIMIT 1) AS r ON true"
)
_SET_OUTCOMES = POSTGRES.render(
    "UPDATE subscribe_reports AS r SET outcome = v.outcome "
    "FROM unnest(?::bigint[], ?::text[]) AS v(id, outcome) WHERE r.id = v.id"
)
Answer = ReportOutcome | BaseException


@dataclass(frozen=True, slots=True)
class Reporting:
    """One report waiting for its batch, and the caller waiting for its answer."""

    report: SubscribeReport
    events: tuple[ConsentEvent, ...]
    answer: ReportAnswer
    future: asyncio.Future[ReportOutcome]

    @property
    def key(self) -> Key:
        return self.report.app_id, self.report.idempotency_key


class ReportBatches(PoolBatches[Reporting]):
    """Records subscribe reports in batches on the pool (module docstring)."""

    async def record(
        self, report: SubscribeReport, events: Sequence[ConsentEvent], answer: ReportAnswer
    ) -> ReportOutcome:
        """As ``Store.record_subscribe_report`` says, committed with its batch."""
        future: asyncio.Future[ReportOutcome] = asyncio.get_running_loop().create_future()
        self._group.add(Reporting(report, tuple(events), answer, future))
        return await future

    async def write(self, batch: list[Reporting]) -> list[Answer]:
        inserted: dict[Key, int] = {}  # what the batch's insert took, kept after a failure
        if len(batch) > 1:
            try:
                return await self.run(
                    lambda connection: write_reports(connection, batch, inserted), len(batch)
                )
            except Exception as error:  # each again alone: see the module docstring
                logger.info("a batch of %d reports is written again alone: %s", len(batch), error)
        firsts: dict[Key, Reporting] = {}
        for item in batch:
            firsts.setdefault(item.key, item)
        alone = (self._alone(item, inserted if firsts[item.key] is item else {}) for item in batch)
        return list(await asyncio.gather(*alone))

    async def _alone(self, item: Reporting, inserted: dict[Key, int]) -> Answer:
        try:
            outcome = await self.run(
                lambda c: record_report(c, item.report, item.events, item.answer), 1
            )
        except Exception as error:
            return error
        if (
            outcome.replayed
            and not outcome.conflict
            and inserted.get(item.key) == outcome.report_id
        ):
            return outcome.model_copy(update={"replayed": False})
        return outcome


async def write_reports(
    connection: Conn, items: Sequence[Reporting], inserted: dict[Key, int]
) -> list[Answer]:
    """Steps 1 to 4 of the module docstring, in the caller's transaction; each answer in order.
    ``inserted`` is filled with the id each new key took, before anything else can fail."""
    inserted.clear()
    first: dict[Key, Reporting] = {}
    for item in items:
        first.setdefault(item.key, item)
    rows = [report_row(item.report) for _, item in sorted(first.items())]
    returned = await connection.fetch(_INSERT_MANY, *columns_of(rows, 6))
    inserted.update({(row[0], row[1]): row[2] for row in returned})
    seen = await _seen(connection, [key for key in first if key not in inserted])
    new = [item for key, item in first.items() if key in inserted]
    states = await lock_many(connection, (ident_of(e) for item in new for e in item.events))
    outcomes: dict[Key, str] = {}
    groups = [(item.events, to_millis(item.report.received_at)) for item in new]
    for item, after in zip(new, await append_in_order(connection, groups, states), strict=True):
        outcomes[item.key] = item.answer(inserted[item.key], after)
    if outcomes:
        ids = [inserted[key] for key in outcomes]
        await connection.execute(_SET_OUTCOMES, ids, list(outcomes.values()))
    return [_answer(item, first[item.key], inserted, outcomes, seen) for item in items]


def _answer(
    item: Reporting,
    first: Reporting,
    inserted: dict[Key, int],
    outcomes: dict[Key, str],
    seen: dict[Key, tuple[int, str, str]],
) -> ReportOutcome:
    key = item.key
    if key not in inserted:
        return replayed_report(seen[key], item.report)
    if item is first:
        return ReportOutcome(
            report_id=inserted[key], replayed=False, conflict=False, outcome=outcomes[key]
        )
    conflict = item.report.body_sha256 != first.report.body_sha256
    return ReportOutcome(
        report_id=inserted[key], replayed=True, conflict=conflict, outcome=outcomes[key]
    )


async def _seen(connection: Conn, keys: list[Key]) -> dict[Key, tuple[int, str, str]]:
    """The stored report of each key used before: its id, body hash and first answer."""
    if not keys:
        return {}
    rows = await connection.fetch(_SEEN, *columns_of(keys, 2))
    return {(row[0], row[1]): (row[2], row[3], row[4]) for row in rows}
