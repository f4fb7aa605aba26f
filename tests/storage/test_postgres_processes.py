"""Several Subgate processes on one PostgreSQL database, hit at the same moment.

Each test starts real OS processes (``tests/storage/pg_worker.py``), waits until every one has
opened its store, then releases them together; nothing relies on sleeping for an order.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import Store, open_store
from storage.ledger import fold
from storage.migrations import migrations_for
from storage.models import MessageStatus, TemplateKind
from tests.storage.postgres_env import connect_admin
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, reservation

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
DEADLINE = 90.0  # seconds for all processes to start, run and exit

pytestmark = pytest.mark.timeout(180)


async def run_processes(url: str, scenario: str, args: list[dict[str, Any]]) -> list[Any]:
    """One process per ``args`` entry, released together; their results in the same order."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.pg_worker",
            scenario,
            url,
            json.dumps(one),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for one in args
    ]
    try:
        return await asyncio.wait_for(_release_together(processes), DEADLINE)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _release_together(processes: list[asyncio.subprocess.Process]) -> list[Any]:
    for process in processes:
        assert process.stdout is not None
        if await process.stdout.readline() != b"ready\n":
            _, err = await process.communicate()
            pytest.fail(f"a worker did not start:\n{err.decode(errors='replace')}")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    outputs = await asyncio.gather(*(process.communicate() for process in processes))
    results = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode(errors="replace")
        results.append(json.loads(out.decode().splitlines()[-1]))
    return results


async def test_one_notify_id_from_every_process_is_stored_once(postgres_url: str) -> None:
    # No store is opened first: the processes also race to migrate the empty schema.
    results = await run_processes(
        postgres_url, "notify", [{"dedupe_key": "shared", "copies": 10}] * PROCESSES
    )

    outcomes = [outcome for result in results for outcome in result]
    assert sorted(duplicate for _, duplicate in outcomes) == [False] + [True] * (PROCESSES * 10 - 1)
    assert len({notification_id for notification_id, _ in outcomes}) == 1
    store = await open_store(postgres_url)
    try:
        assert await store.count_notifications() == 1
        assert len(await store.consent_events(APP)) == 1
    finally:
        await store.close()
    admin = await connect_admin(postgres_url)
    try:
        versions = [r[0] for r in await admin.fetch("SELECT version FROM schema_migrations")]
    finally:
        await admin.close()
    assert sorted(versions) == [m.version for m in migrations_for("postgres")]


@pytest.fixture
async def shared_store(postgres_url: str) -> AsyncIterator[Store]:
    store = await open_store(postgres_url)
    yield store
    await store.close()


async def _state_is_the_fold(store: Store, template_id: str = TEMPLATE) -> int:
    [state] = await store.consent_states(APP, USER, "mini_template", template_id)
    history = await store.consent_history(APP, USER, "mini_template", template_id)
    assert state == fold(APP, USER, "mini_template", template_id, [(e, e.id) for e in history])
    return state.credits


async def test_one_credit_is_reserved_once_across_processes(
    postgres_url: str, shared_store: Store
) -> None:
    await shared_store.append_consent_events([accept()], NOW)

    results = await run_processes(
        postgres_url,
        "reserve",
        [{"keys": [f"p{p}-k{i}" for i in range(10)]} for p in range(PROCESSES)],
    )

    assert [error for r in results for error in r["errors"]] == []
    reserved = [message for r in results for message in r["reserved"]]
    assert len(reserved) == 1
    assert sum(r["refused"] for r in results) == PROCESSES * 10 - 1
    assert await shared_store.count_messages() == 1
    assert await _state_is_the_fold(shared_store) == 0


async def test_one_idempotency_key_from_every_process_reserves_once(
    postgres_url: str, shared_store: Store
) -> None:
    await shared_store.append_consent_events([accept(0), accept(1)], NOW)

    results = await run_processes(postgres_url, "reserve", [{"keys": ["shared"] * 5}] * PROCESSES)

    assert [error for r in results for error in r["errors"]] == []
    reserved = [message for r in results for message in r["reserved"]]
    assert sorted(replayed for _, replayed in reserved) == [False] + [True] * (PROCESSES * 5 - 1)
    assert len({message_id for message_id, _ in reserved}) == 1
    assert await _state_is_the_fold(shared_store) == 1


async def test_several_workers_drain_the_outbox_claiming_each_message_once(
    postgres_url: str, shared_store: Store
) -> None:
    await shared_store.append_consent_events([accept(template_id="T-long")], NOW)
    wanted = set()
    for i in range(120):  # due at once: reserved an hour after NOW, leases long run out
        outcome = await shared_store.reserve_send(
            reservation(f"k-{i}", template_id="T-long", kind=TemplateKind.LONG_TERM)
        )
        wanted.add(outcome.message.id)
    now = NOW + timedelta(hours=2)
    worker = {"now": now.isoformat(), "lease": (now + timedelta(hours=1)).isoformat(), "limit": 5}

    results = await run_processes(
        postgres_url, "drain", [{**worker, "owner": f"worker-{p}"} for p in range(PROCESSES)]
    )

    claimed = [message_id for result in results for message_id in result]
    assert len(claimed) == len(set(claimed)) == len(wanted)
    assert set(claimed) == wanted
    assert await shared_store.count_messages(MessageStatus.SENT) == len(wanted)
    for message_id in sorted(wanted)[:10]:
        message = await shared_store.get_message(APP, message_id)
        assert message is not None and message.attempts == 1
