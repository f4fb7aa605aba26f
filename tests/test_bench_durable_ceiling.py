"""The durable ceiling (``bench/ceiling_durable.py``) answers a verified notification only once
its body is on disk, refuses a forged one without writing it, and syncs what arrived together
once: a real server over loopback and a real file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from bench.bodies import notification, signed_body
from bench.ceiling import build
from bench.ceiling_durable import DurableLog
from tests.pki import rsa_key

APP_ID = "2021000000000001"


def _body(index: int, key_index: int = 0) -> bytes:
    return signed_body(notification(index, APP_ID, datetime.now(UTC)), rsa_key(key_index))


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with session.post(url, data=body, headers=headers) as answer:
        return answer.status, await answer.text()


async def test_a_verified_notification_is_on_disk_when_it_is_answered(tmp_path: Path) -> None:
    log = DurableLog(tmp_path / "durable.log", ring_bytes=1 << 20)
    try:
        async with TestServer(build(rsa_key(0).public_key(), keep=log.append)) as server:
            url = str(server.make_url("/alipay/notify"))
            async with aiohttp.ClientSession() as session:
                body = _body(1)
                assert await _post(session, url, body) == (200, "success")
                assert (tmp_path / "durable.log").read_bytes().startswith(body)
                forged = _body(2, key_index=1)
                assert await _post(session, url, forged) == (400, "fail")
    finally:
        log.close()
    written = (tmp_path / "durable.log").read_bytes()
    assert forged not in written and log.syncs == 1


async def test_what_arrives_together_is_synced_once(tmp_path: Path) -> None:
    log = DurableLog(tmp_path / "durable.log", ring_bytes=1 << 20)
    records = [f"record {index};".encode() for index in range(10)]
    try:
        await asyncio.gather(*(log.append(record) for record in records))
        assert log.syncs == 1
        await log.append(b"later;")
        assert log.syncs == 2
    finally:
        log.close()
    assert (tmp_path / "durable.log").read_bytes().startswith(b"".join(records) + b"later;")


async def test_the_ring_is_written_over_from_its_start(tmp_path: Path) -> None:
    log = DurableLog(tmp_path / "durable.log", ring_bytes=64)
    try:
        await log.append(b"a" * 40)
        await log.append(b"b" * 40)  # does not fit after the first: written at the start
    finally:
        log.close()
    written = (tmp_path / "durable.log").read_bytes()
    assert len(written) == 64 and written.startswith(b"b" * 40) and written.endswith(b"\0" * 24)
