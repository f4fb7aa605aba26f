"""One Subgate store process of the multi-process tests (not a test module itself).

    python -m tests.storage.pg_worker SCENARIO URL ARGS_JSON

Opens the store (migrating the schema if it is the first), writes ``ready``, waits for ``go``
on stdin so that every process starts its work at the same moment, runs the scenario and
writes its result as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from storage import Store, open_store
from storage.errors import ConsentRequired
from storage.models import AttemptOutcome, AttemptResult, ReserveOutcome
from tests.storage.records import follow, notification, reservation

Scenario = Callable[[Store, dict[str, Any]], Awaitable[Any]]


async def notify(store: Store, args: dict[str, Any]) -> list[tuple[int, bool]]:
    """The same notification, many times at once: Alipay's retries reaching every replica."""
    outcomes = await asyncio.gather(
        *(
            store.record_notification(notification(args["dedupe_key"]), [follow()])
            for _ in range(args["copies"])
        )
    )
    return [(o.notification_id, o.duplicate) for o in outcomes]


async def reserve(store: Store, args: dict[str, Any]) -> dict[str, Any]:
    """Sends under the given keys, all at once; how each ended."""
    results = await asyncio.gather(
        *(store.reserve_send(reservation(key)) for key in args["keys"]), return_exceptions=True
    )
    return {
        "reserved": [[r.message.id, r.replayed] for r in results if isinstance(r, ReserveOutcome)],
        "refused": sum(isinstance(r, ConsentRequired) for r in results),
        "errors": [
            repr(r)
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, ConsentRequired)
        ],
    }


async def drain(store: Store, args: dict[str, Any]) -> list[str]:
    """An outbox worker: claim, attempt and settle due messages until none is left to claim."""
    owner, limit = args["owner"], args["limit"]
    now, lease = datetime.fromisoformat(args["now"]), datetime.fromisoformat(args["lease"])
    claimed: list[str] = []
    while batch := await store.claim_due_messages(owner, now, lease, limit):
        for message in batch:
            started = await store.begin_attempt(message.id, owner, now, lease)
            if started is None:
                raise AssertionError(f"{owner} claimed {message.id} but may not attempt it")
            await store.finish_attempt(message.id, AttemptResult(outcome=AttemptOutcome.SENT), now)
            claimed.append(message.id)
    return claimed


SCENARIOS: dict[str, Scenario] = {"notify": notify, "reserve": reserve, "drain": drain}


async def main(scenario: str, url: str, args: dict[str, Any]) -> int:
    store = await open_store(url)
    try:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if go.strip() != "go":
            return 2
        result = await SCENARIOS[scenario](store, args)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
