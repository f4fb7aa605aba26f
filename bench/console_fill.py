"""The console benchmark's store: a 1 M-user ledger, a million notifications and the ledger's
messages, in one SQLite database built once and cached in ``bench/.cache``.

- The ledger is ``bench.ledger_fill``'s (family ``mixed``), copied.
- The notifications go in through the store's own ``record_notification``
  (``bench.notifications_fill``), received evenly over the 25 days before the build, so the
  last hour and day of the charts hold what a steady app's would (about 40,000 a day for a
  million).
- Every ``spend`` of the ledger names its message (``message:msg_…``): each becomes the outbox
  row it would be, created at the spend, ``failed`` where the ledger refunded it and ``sent``
  otherwise (one in 500 of those ``unknown`` instead, the credit kept spent, as the outbox leaves
  it); each with its one attempt in ``message_attempts``. Bulk SQL, in one transaction.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from bench.cache import cached_database
from bench.ledger_fill import MIXED, cached_ledger
from bench.notifications_fill import _SPAN, _fill, notify_id
from verify.keys import key_fingerprint

VERSION = 1
UNKNOWN_EVERY = 500

# One message per spend, as the outbox would have left it; its status from the ledger.
_MESSAGES = """
INSERT INTO messages (id, app_id, idempotency_key, request_sha256, channel, user_id,
    template_id, payload, status, attempts, next_attempt_at, platform_code, platform_msg,
    sub_code, sub_msg, last_error, created_at, updated_at, sent_at, recipients, skipped,
    warnings, ledger_channel)
SELECT substr(s.evidence, 9), s.app_id, substr(s.evidence, 9), 'bench', s.channel, s.user_id,
    s.template_id, '{}', s.status, 1, s.occurred_at,
    CASE s.status WHEN 'sent' THEN '10000' WHEN 'failed' THEN '40004' END,
    CASE s.status WHEN 'sent' THEN 'Success' WHEN 'failed' THEN 'Business Failed' END,
    CASE s.status WHEN 'failed' THEN 'isv.invalid-template' END, NULL,
    CASE s.status WHEN 'unknown' THEN 'the answer could not be verified' END,
    s.occurred_at, s.occurred_at + 350,
    CASE s.status WHEN 'sent' THEN s.occurred_at + 350 END,
    json_array(s.user_id), '[]', '[]', s.channel
FROM (SELECT e.*, CASE
        WHEN EXISTS (SELECT 1 FROM consent_events AS r WHERE r.app_id = e.app_id
            AND r.evidence = e.evidence AND r.action = 'refund') THEN 'failed'
        WHEN e.id % :every = 0 THEN 'unknown' ELSE 'sent' END AS status
    FROM consent_events AS e WHERE e.action = 'spend') AS s
"""
_ATTEMPTS = """
INSERT INTO message_attempts (message_id, number, started_at, finished_at, status,
    platform_code, platform_msg, sub_code, sub_msg, error)
SELECT id, 1, created_at, updated_at, status, platform_code, platform_msg, sub_code, sub_msg,
    last_error FROM messages
"""


@dataclass(frozen=True)
class ConsoleStore:
    path: Path
    users: int
    notifications: int
    meta: dict[str, Any]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path.resolve()}"


def cached_console_store(
    users: int, notifications: int, alipay_key: rsa.RSAPrivateKey
) -> ConsoleStore:
    """The cached database, built once per size, ``VERSION`` and schema."""
    path = cached_database(f"console-{users}u-{notifications}n-v{VERSION}")
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        meta = build(path, users, notifications, f"key:{key_fingerprint(alipay_key.public_key())}")
        meta_path.write_text(json.dumps(meta, indent=2))
    return ConsoleStore(path, users, notifications, json.loads(meta_path.read_text()))


def build(path: Path, users: int, notifications: int, key_label: str) -> dict[str, Any]:
    ledger = cached_ledger(MIXED, users)
    print(f"  building {path.name}: the ledger, {notifications:,} notifications, messages ...")
    started = time.monotonic()
    partial = path.with_suffix(".partial")
    for stale in (partial, *(partial.with_name(partial.name + s) for s in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    shutil.copyfile(ledger.path, partial)
    start = datetime.now(UTC) - _SPAN
    asyncio.run(_fill(f"sqlite:///{partial.resolve()}", notifications, start, key_label))
    messages = _messages(partial)
    partial.rename(path)
    seconds = time.monotonic() - started
    size = path.stat().st_size
    print(f"  built in {seconds:.0f} s: {messages:,} messages, {size / 1e6:.0f} MB", flush=True)
    return {
        "users": users,
        "notifications": notifications,
        "messages": messages,
        "bytes": size,
        "build_seconds": round(seconds, 1),
        "notifications_start": start.isoformat(),
        "notifications_end": (start + _SPAN).isoformat(),
        "ledger": ledger.meta,
    }


def _messages(path: Path) -> int:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        connection.execute(_MESSAGES, {"every": UNKNOWN_EVERY})
        connection.execute(_ATTEMPTS)
        connection.execute("COMMIT")
        connection.execute("ANALYZE")  # as a database in service would have been, eventually
        return int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        connection.close()


def sample_ids(store: ConsoleStore, count: int, seed: int = 3) -> dict[str, list[Any]]:
    """What the load asks for, drawn from the database: notify ids, message ids, users and
    deep keyset cursors (``received_ms~id`` of a notification, a failing delivery's id)."""
    connection = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        messages = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM messages ORDER BY random() LIMIT ?", (count,)
            )
        ]
        cursors = [
            f"{row[0]}~{row[1]}"
            for row in connection.execute(
                "SELECT received_at, id FROM notifications ORDER BY random() LIMIT ?", (count,)
            )
        ]
        failing = [
            row[0]
            for row in connection.execute(
                "SELECT id FROM deliveries WHERE status = 'pending' ORDER BY random() LIMIT ?",
                (count,),
            )
        ]
    finally:
        connection.close()
    step = max(store.notifications // count, 1)
    return {
        "notify_ids": [notify_id((i * step + seed) % store.notifications) for i in range(count)],
        "messages": messages,
        "users": [(i * 7919 + seed) % store.users for i in range(count)],
        "cursors": cursors,
        "failing_cursors": failing,
        "yesterday": [(datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")],
    }


# The destination's backlog, written onto the cached store (not part of its cache key): a
# merchant service that has been down, every other stored event delivered to it in vain.
DESTINATION = "merchant"
DELIVERIES = 100_000
_DELIVERIES = """
INSERT INTO deliveries (destination, event_id, event_txid, app_id, user_id, status, attempts,
    next_attempt_at, retry_since, last_status, last_error, created_at, updated_at)
SELECT :destination, e.id, e.txid, e.app_id, e.user_id,
    CASE e.n % 2 WHEN 0 THEN 'dead' ELSE 'pending' END, 1 + e.n % 3,
    :later, e.created_at, CASE e.n % 3 WHEN 1 THEN 503 END,
    CASE e.n % 3 WHEN 1 THEN 'answered 503' ELSE 'connection refused' END,
    e.created_at, e.created_at + (e.n % 3) * 60000 + 1000
FROM (SELECT id, txid, app_id, user_id, created_at, row_number() OVER (ORDER BY id) AS n
    FROM events WHERE id % :step = 0 ORDER BY id LIMIT :count) AS e ORDER BY e.id
"""
# Each delivery's attempts, a minute apart: 1-3 of them, as its ``attempts`` says.
_DELIVERY_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, error)
SELECT d.id, d.created_at + n.k * 60000 + 1000, d.last_status, 2 + d.id % 40, d.last_error
FROM deliveries AS d JOIN (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) AS n
    ON n.k < d.attempts
WHERE d.destination = :destination ORDER BY d.id, n.k
"""


def with_destination(store: ConsoleStore) -> dict[str, int]:
    """``DESTINATION``'s deliveries on the store, written once (about 10 s at a million
    events): ``DELIVERIES`` of the stored events spread over the whole log, every other one
    dead and the rest failing (due in a year, so no worker retries them while pages are
    measured), each with 1-3 attempts; its cursor at the log's end, so the fan-out has nothing
    to add."""
    connection = sqlite3.connect(store.path, isolation_level=None)
    try:
        if (
            connection.execute(
                "SELECT 1 FROM destination_cursors WHERE destination = ?", (DESTINATION,)
            ).fetchone()
            is None
        ):
            _fill_deliveries(connection)
        return {
            status: int(count)
            for status, count in connection.execute(
                "SELECT status, count(*) FROM deliveries WHERE destination = ? GROUP BY status",
                (DESTINATION,),
            )
        }
    finally:
        connection.close()


def _fill_deliveries(connection: sqlite3.Connection) -> None:
    events, txid, last = connection.execute(
        "SELECT count(*), max(txid), max(id) FROM events"
    ).fetchone()
    later = int((time.time() + 365 * 86400) * 1000)
    where = {"destination": DESTINATION}
    connection.execute("BEGIN")
    connection.execute(
        _DELIVERIES,
        {**where, "later": later, "step": max(events // DELIVERIES, 1), "count": DELIVERIES},
    )
    connection.execute(_DELIVERY_ATTEMPTS, where)
    connection.execute(
        "INSERT INTO destination_cursors (destination, txid, event_id) VALUES (?, ?, ?)",
        (DESTINATION, txid, last),
    )
    connection.execute("COMMIT")
    connection.execute("ANALYZE deliveries")
    connection.execute("ANALYZE delivery_attempts")


# Retries a day apart and no give-up within a run: the worker has nothing due while pages are
# measured (the stored backlog is due in a year).
_DESTINATION_SETTINGS = """
[[destinations]]
name = "{name}"
url = "http://127.0.0.1:{port}/events"
secret = "{secret}"
retry_initial_seconds = 86400
retry_max_seconds = 86400
give_up_after_seconds = 31536000
"""


def destination_config(port: int) -> str:
    """The config's ``[[destinations]]`` entry the backlog was written for: a URL at a
    loopback ``port`` nobody listens on, and a fresh secret."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return _DESTINATION_SETTINGS.format(name=DESTINATION, port=port, secret=secret)
