"""Pre-fill the notifications table fast, with rows written by the store itself.

Each row is a ``NotificationRecord`` as intake makes it for one of the benchmark's
``trade_status_sync`` notifications (``bench.bodies.notification``), stored with the store's own
``record_notification`` (so schema, encoding and statement are the store's, whatever they are
today), ``_CHUNK`` concurrent calls at a time so that each chunk is one group commit, with
``synchronous = OFF`` (a crash while building only means a rebuild). ``raw_body`` is the
form-encoded body (``sign_type`` and ``sign`` included), so rows are as large as real ones; the
``sign`` is 256 pseudo-random bytes in base64 rather than a real signature (nothing re-verifies
a stored row; its size is the same).

``notify_id``s are date-prefixed and older than the load's, as Alipay's are: the load's new
notifications land at the end of the ``(app_id, dedupe_key)`` index, as they would in production.
A sample is read back through ``SQLiteStore.get_notification`` and compared field by field.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from cryptography.hazmat.primitives.asymmetric import rsa

from bench.bodies import BEIJING, notification
from bench.cache import cached_database
from bench.intake import APP_ID
from storage import SQLiteOptions, open_store
from storage.models import NotificationRecord
from storage.sqlite.connection import connect
from storage.sqlite.migrate import apply_migrations
from verify.keys import key_fingerprint

VERSION = 1
_CHUNK = 20_000
_SPAN = timedelta(days=25)  # pre-filled rows were signed over the last 25 days


@dataclass(frozen=True)
class Filled:
    path: Path
    rows: int
    meta: dict[str, Any]


def notify_id(index: int) -> str:
    return f"2026110100222{index:021d}"


def record(index: int, count: int, start: datetime, key_label: str) -> NotificationRecord:
    """The record intake makes of one of the benchmark's trade notifications."""
    signed_at = start + _SPAN * (index / max(count, 1))
    fields = notification(10**9 + index, APP_ID, signed_at)
    fields["notify_id"] = notify_id(index)
    signature = hashlib.sha256(str(index).encode()).digest() * 8
    fields |= {"sign_type": "RSA2", "sign": base64.b64encode(signature).decode("ascii")}
    body = "&".join(f"{k}={quote_plus(v)}" for k, v in fields.items()).encode("ascii")
    occurred = datetime.strptime(fields["notify_time"], "%Y-%m-%d %H:%M:%S")
    occurred_at = occurred.replace(tzinfo=BEIJING)
    values: dict[str, Any] = {
        "app_id": APP_ID,
        "dedupe_key": fields["notify_id"],
        "kind": fields["notify_type"],
        "handler": "store_only",
        "raw_body": body,
        "charset": "utf-8",
        "sign_type": "RSA2",
        "rule": "V1",
        "key_label": key_label,
        "occurred_at": occurred_at,
        "received_at": occurred_at + timedelta(milliseconds=index % 1500),
    }
    if "fields" in NotificationRecord.model_fields:  # schemas that store the decoded fields too
        values["fields"] = fields
    return NotificationRecord.model_validate(values)


def cached_notifications(count: int, alipay_key: rsa.RSAPrivateKey) -> Filled:
    label = f"key:{key_fingerprint(alipay_key.public_key())}"
    path = cached_database(f"notifications-{count}-v{VERSION}")
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        meta = build(path, count, label)
        meta_path.write_text(json.dumps(meta, indent=2))
    return Filled(path, count, json.loads(meta_path.read_text()))


def build(path: Path, count: int, key_label: str) -> dict[str, Any]:
    print(f"  building {path.name}: {count:,} stored notifications ...", flush=True)
    started = time.monotonic()
    partial = path.with_suffix(".partial")
    for stale in (partial, *(partial.with_name(partial.name + s) for s in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    start = datetime.now(UTC) - _SPAN - timedelta(days=1)
    asyncio.run(_fill(f"sqlite:///{partial.resolve()}", count, start, key_label))
    partial.rename(path)
    asyncio.run(check_sample(f"sqlite:///{path.resolve()}", count, start, key_label))
    seconds = time.monotonic() - started
    print(f"  built in {seconds:.0f} s ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return {
        "rows": count,
        "bytes": path.stat().st_size,
        "build_seconds": round(seconds, 1),
        "start": start.isoformat(),
        "method": "store.record_notification, _CHUNK at a time (one group commit each); "
        "sample read back with get_notification",
    }


async def _fill(url: str, count: int, start: datetime, key_label: str) -> None:
    """Through the store's own write path; without fsync (a crash only means a rebuild)."""
    store = await open_store(url, synchronous="OFF")
    try:
        for first in range(0, count, _CHUNK):
            records = [
                record(i, count, start, key_label) for i in range(first, min(first + _CHUNK, count))
            ]
            outcomes = await asyncio.gather(*(store.record_notification(r) for r in records))
            if any(outcome.duplicate for outcome in outcomes):
                raise AssertionError("a pre-filled notify_id was stored twice")
    finally:
        await store.close()


async def check_sample(
    url: str, count: int, start: datetime, key_label: str, sample: int = 200
) -> None:
    """Rows read back through the store exactly as they were meant to be stored."""
    store = await open_store(url)
    try:
        if await store.count_notifications(APP_ID) != count:
            raise AssertionError("the pre-filled table does not hold the rows written")
        for index in random.Random(2).sample(range(count), min(sample, count)):
            expected = record(index, count, start, key_label)
            stored = await store.get_notification(APP_ID, notify_id(index))
            if stored is None:
                raise AssertionError(f"pre-filled notification {index} is missing")
            same = stored.model_dump(exclude={"id"}) == expected.model_dump()
            if not same or stored.fields != expected.fields:
                raise AssertionError(f"pre-filled notification {index} reads back differently")
    finally:
        await store.close()


def empty_database(path: Path) -> Path:
    """A database with the schema only (the 0-row point of the scaling curve)."""
    connection = connect(SQLiteOptions(path=path))
    apply_migrations(connection)
    connection.close()
    return path


def copy_to(filled: Filled, target: Path) -> Path:
    shutil.copyfile(filled.path, target)
    return target
