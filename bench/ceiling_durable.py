"""The durable ceiling: the ceiling's work, and each verified notification on disk before its
answer. A reference, not a target.

python -m bench.ceiling_durable PORT ALIPAY_PUBLIC_KEY_PEM_FILE LOG_FILE

Subgate answers Alipay only once a notification is durable (README, "Notification gateway"),
and the verify-only ceiling (``bench/ceiling.py``) stores nothing, so at a few connections the
ratio between them holds the cost of durability itself: every request waits for an
``fdatasync``, whichever server makes it. This server pays that cost and as little else as it
can: the raw bodies verified while the last sync was out are written together at the next place
in a log file and synced once, on one thread, and each answer waits for the sync that covers it
(Subgate's own ``storage/group_commit.py``, without its gathering iterations). The log is a ring
written over in place, zero-filled when the server starts, so that a sync never has to grow the
file (a WAL that SQLite resets and writes over again behaves the same way). Nothing is indexed,
deduplicated or read back: what Subgate does beyond this is what its ratio to this server shows.
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
from storage.group_commit import GroupCommit

RING_BYTES = 64 << 20
_ZEROS = bytes(1 << 20)
Pending = tuple[bytes, "asyncio.Future[None]"]


class DurableLog:
    """Appends records to a ring file; ``append`` returns once the record is synced."""

    def __init__(self, path: Path, ring_bytes: int = RING_BYTES) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        for offset in range(0, ring_bytes, len(_ZEROS)):
            os.pwrite(self._fd, _ZEROS[: ring_bytes - offset], offset)
        os.fsync(self._fd)
        self._ring = ring_bytes
        self._offset = 0
        self._group: GroupCommit[Pending] = GroupCommit(self._commit, gather_iterations=0)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-log")
        self.syncs = 0

    async def append(self, record: bytes) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._group.add((record, future))
        await future

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        os.close(self._fd)

    async def _commit(self, batch: list[Pending]) -> None:
        """Write and sync ``batch``; settle each append (a handler whose client left is
        cancelled already)."""
        data = b"".join(record for record, _ in batch)
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._write, data)
        except OSError as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

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
