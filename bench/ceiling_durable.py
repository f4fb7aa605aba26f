"""The durable ceiling: the ceiling's work, and each verified notification on disk before its
answer. A reference, not a target.

python -m bench.ceiling_durable PORT ALIPAY_PUBLIC_KEY_PEM_FILE LOG_FILE

Subgate answers Alipay only once a notification is durable (README, "Notification gateway"),
and the verify-only ceiling (``bench/ceiling.py``) stores nothing, so at a few connections the
ratio between them holds the cost of durability itself: every request waits for an
``fdatasync``, whichever server makes it. This server pays that cost and as little else as it
can: the raw bodies verified while the last sync was out are written together at the next place
in a log file and synced once (group commit), on one thread, and each answer waits for the sync
that covers it. The log is a ring written over in place, zero-filled when the server starts, so
that a sync never has to grow the file (a WAL that SQLite resets and writes over again behaves
the same way). Nothing is indexed, deduplicated or read back: what Subgate does beyond this is
what its ratio to this server shows.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.ceiling import build

RING_BYTES = 64 << 20
_ZEROS = bytes(1 << 20)


class DurableLog:
    """Appends records to a ring file; ``append`` returns once the record is synced."""

    def __init__(self, path: Path, ring_bytes: int = RING_BYTES) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        for offset in range(0, ring_bytes, len(_ZEROS)):
            os.pwrite(self._fd, _ZEROS[: ring_bytes - offset], offset)
        os.fsync(self._fd)
        self._ring = ring_bytes
        self._offset = 0
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-log")
        self.syncs = 0

    async def append(self, record: bytes) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_pending())
        await future

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        os.close(self._fd)

    async def _flush_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                data = b"".join(record for record, _ in batch)
                try:
                    await loop.run_in_executor(self._thread, self._write, data)
                except OSError as error:
                    for _, future in batch:
                        if not future.done():  # a handler whose client left is cancelled
                            future.set_exception(error)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flusher = None

    def _write(self, data: bytes) -> None:
        if len(data) > self._ring:
            raise OSError("a batch larger than the ring")
        if self._offset + len(data) > self._ring:
            self._offset = 0
        os.pwrite(self._fd, data, self._offset)
        self._offset += len(data)
        os.fdatasync(self._fd)
        self.syncs += 1


def main() -> None:
    port, key_file, log_file = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    key = serialization.load_pem_public_key(key_file.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    log = DurableLog(log_file)
    loop = uvloop.new_event_loop()
    try:
        app = build(key, keep=log.append)
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)
    finally:
        log.close()


if __name__ == "__main__":
    main()
