"""SQLiteStore: the embedded default store.

Writes go through one ``SerialWriter`` (one connection, one thread, group commit), so every
write transaction is serialised: spend-once and idempotency need no retry loops. Reads use a
separate read-only aiosqlite connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from storage.errors import StorageUnavailable
from storage.models import (
    ConsentEvent,
    NotificationRecord,
    RecordOutcome,
    RefusalCount,
    StoredNotification,
)
from storage.sqlite.connection import SQLiteOptions, connect
from storage.sqlite.migrate import apply_migrations
from storage.sqlite.writer import SerialWriter, WriteJob
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

_INSERT_NOTIFICATION = """
INSERT INTO notifications (app_id, dedupe_key, kind, handler, fields, raw_body, charset,
    sign_type, rule, key_label, occurred_at, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (app_id, dedupe_key) DO NOTHING
RETURNING id
"""
_INSERT_EVENT = """
INSERT INTO consent_events (app_id, user_id, channel, template_id, action, occurred_at,
    recorded_at, source, evidence)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_ADD_REFUSALS = """
INSERT INTO refusal_counts (app_id, reason, count, last_at) VALUES (?, ?, ?, ?)
ON CONFLICT (app_id, reason) DO UPDATE SET
    count = count + excluded.count, last_at = max(last_at, excluded.last_at)
"""
_NOTIFICATION_COLUMNS = (
    "id, app_id, dedupe_key, kind, handler, fields, raw_body, charset, sign_type, rule, "
    "key_label, occurred_at, received_at"
)


class SQLiteStore:
    def __init__(self, writer: SerialWriter, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._closed = False

    @classmethod
    async def open(cls, options: SQLiteOptions) -> SQLiteStore:
        def connect_and_migrate() -> sqlite3.Connection:
            connection = connect(options)
            apply_migrations(connection)
            return connection

        try:
            writer = await SerialWriter.open(connect_and_migrate)
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open {options.path}: {error}") from error
        reader = await aiosqlite.connect(connect_factory(options))
        return cls(writer, reader)

    @property
    def writer(self) -> SerialWriter:
        return self._writer

    async def close(self) -> None:
        """Finish pending writes, then close both connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        await self._reader.close()

    async def ping(self) -> None:
        await self._read("SELECT 1", ())

    async def _write(self, job: WriteJob[Any]) -> Any:
        return await self._writer.run(job)

    async def _read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            async with self._reader.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise StorageUnavailable(f"read failed: {error}") from error

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        row = _notification_row(record)
        event_rows = [_event_row(event, record.received_at) for event in events]

        def job(connection: sqlite3.Connection) -> RecordOutcome:
            inserted = connection.execute(_INSERT_NOTIFICATION, row).fetchone()
            if inserted is None:
                existing = connection.execute(
                    "SELECT id FROM notifications WHERE app_id = ? AND dedupe_key = ?",
                    (record.app_id, record.dedupe_key),
                ).fetchone()
                return RecordOutcome(notification_id=existing[0], duplicate=True)
            connection.executemany(_INSERT_EVENT, event_rows)
            return RecordOutcome(notification_id=inserted[0], duplicate=False)

        outcome: RecordOutcome = await self._write(job)
        return outcome

    async def get_notification(self, app_id: str, dedupe_key: str) -> StoredNotification | None:
        rows = await self._read(
            f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications "  # noqa: S608 (constant)
            "WHERE app_id = ? AND dedupe_key = ?",
            (app_id, dedupe_key),
        )
        return _stored_notification(rows[0]) if rows else None

    async def count_notifications(self, app_id: str | None = None) -> int:
        if app_id is None:
            rows = await self._read("SELECT count(*) FROM notifications", ())
        else:
            rows = await self._read(
                "SELECT count(*) FROM notifications WHERE app_id = ?", (app_id,)
            )
        return int(rows[0][0])

    async def consent_events(self, app_id: str, user_id: str | None = None) -> list[ConsentEvent]:
        sql = (
            "SELECT app_id, user_id, channel, template_id, action, occurred_at, source, evidence "
            "FROM consent_events WHERE app_id = ?"
        )
        params: tuple[str, ...] = (app_id,)
        if user_id is not None:
            sql += " AND user_id = ?"
            params += (user_id,)
        rows = await self._read(sql + " ORDER BY occurred_at, id", params)
        return [_consent_event(row) for row in rows]

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        rows = [(app, reason, n, to_millis(at)) for (app, reason), n in counts.items() if n]

        def job(connection: sqlite3.Connection) -> None:
            connection.executemany(_ADD_REFUSALS, rows)

        await self._write(job)

    async def refusal_counts(self) -> list[RefusalCount]:
        rows = await self._read(
            "SELECT app_id, reason, count, last_at FROM refusal_counts ORDER BY app_id, reason", ()
        )
        return [
            RefusalCount(app_id=r[0], reason=r[1], count=r[2], last_at=from_millis(r[3]))
            for r in rows
        ]


def connect_factory(options: SQLiteOptions) -> str:
    """The read-only URI aiosqlite opens (the writer created the file and WAL already)."""
    return f"{options.path.resolve().as_uri()}?mode=ro"


def _notification_row(record: NotificationRecord) -> tuple[Any, ...]:
    return (
        record.app_id,
        record.dedupe_key,
        record.kind,
        record.handler,
        json.dumps(record.fields, ensure_ascii=False, separators=(",", ":")),
        record.raw_body,
        record.charset,
        record.sign_type,
        record.rule,
        record.key_label,
        optional_millis(record.occurred_at),
        to_millis(record.received_at),
    )


def _event_row(event: ConsentEvent, recorded_at: datetime) -> tuple[Any, ...]:
    return (
        event.app_id,
        event.user_id,
        event.channel,
        event.template_id,
        event.action.value,
        to_millis(event.occurred_at),
        to_millis(recorded_at),
        event.source.value,
        event.evidence,
    )


def _stored_notification(row: sqlite3.Row) -> StoredNotification:
    return StoredNotification(
        id=row[0],
        app_id=row[1],
        dedupe_key=row[2],
        kind=row[3],
        handler=row[4],
        fields=json.loads(row[5]),
        raw_body=bytes(row[6]),
        charset=row[7],
        sign_type=row[8],
        rule=row[9],
        key_label=row[10],
        occurred_at=optional_datetime(row[11]),
        received_at=from_millis(row[12]),
    )


def _consent_event(row: sqlite3.Row) -> ConsentEvent:
    return ConsentEvent.model_validate(
        {
            "app_id": row[0],
            "user_id": row[1],
            "channel": row[2],
            "template_id": row[3],
            "action": row[4],
            "occurred_at": from_millis(row[5]),
            "source": row[6],
            "evidence": row[7],
        }
    )
