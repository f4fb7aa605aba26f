"""The books of a sends run: every count that must agree afterwards (``bench/sends.py``).

After the run, once nothing is pending or in flight, platform calls the fake received == credits
spent == messages ``sent`` == spend events - refunds; no user got more sends than credits; no
business key reached the platform twice; no message has two spend events; and a sample of the
users that were sent to reads back through the store with projection == fold.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from bench.intake import APP_ID
from bench.ledger_fill import CHANNEL
from bench.service import ONE_TIME
from storage import open_store
from storage.ledger import fold


def read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)


def books(database: Path, k: int, users: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Every count that must agree after a run that gave each of ``users`` users ``k`` credits,
    and whether they all do."""
    with read_only(database) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        actions = dict(db.execute("SELECT action, count(*) FROM consent_events GROUP BY action"))
        spends_per_message = Counter(
            evidence
            for (evidence,) in db.execute(
                "SELECT evidence FROM consent_events WHERE action = 'spend'"
            )
        )
        credits = dict(
            db.execute(
                "SELECT user_id, credits FROM consents WHERE app_id = ? AND channel = ? "
                "AND template_id = ?",
                (APP_ID, CHANNEL, ONE_TIME),
            )
        )
        sent_by_user = Counter(
            dict(
                db.execute(
                    "SELECT user_id, count(*) FROM messages WHERE status = 'sent' GROUP BY user_id"
                )
            )
        )
    calls_by_user = Counter(stats["per_user"])
    sent = statuses.get("sent", 0)
    spent = users * k - sum(credits.values())
    net_spends = actions.get("spend", 0) - actions.get("refund", 0)
    over_credit = [u for u, n in calls_by_user.items() if n > k]
    mismatched = [
        user
        for user, left in credits.items()
        if not k - left == calls_by_user[user] == sent_by_user[user]
    ]
    double_spent = [e for e, n in spends_per_message.items() if n > 1]
    unsettled = {s: n for s, n in statuses.items() if s != "sent"}
    checks = {
        "platform_calls == credits_spent": stats["calls"] == spent,
        "credits_spent == messages_sent": spent == sent,
        "messages_sent == spend_events - refunds": sent == net_spends,
        "every user has a projection": len(credits) == users,
        "no user got more sends than credits": not over_credit,
        "credits left == k - sends, per user": not mismatched,
        "no message has two spend events": not double_spent,
        "no business key reached the platform twice": not stats["keys_delivered_more_than_once"],
        "the fake refused nothing": not stats["refused"],
        "every message settled as sent": not unsettled,
    }
    return {
        "platform_calls": stats["calls"],
        "credits_spent": spent,
        "messages": statuses,
        "spend_events": actions.get("spend", 0),
        "refund_events": actions.get("refund", 0),
        "users_sent_to": len(calls_by_user),
        "users_over_credit": len(over_credit),
        "users_mismatched": len(mismatched),
        "double_spent_messages": len(double_spent),
        "keys_delivered_twice": len(stats["keys_delivered_more_than_once"]),
        "refused_by_fake": stats["refused"],
        "checks": checks,
        "balanced": all(checks.values()),
        "sent_by_user": sent_by_user,
    }


async def fold_sample(
    url: str, k: int, sent_by_user: Counter[str], size: int = 200
) -> dict[str, Any]:
    """Users that were sent to read back through the store: projection == fold, credits == k - n."""
    users = sorted(sent_by_user)
    sample = random.Random(3).sample(users, min(size, len(users)))
    store = await open_store(url)
    bad: list[str] = []
    try:
        for user in sample:
            [state] = await store.consent_states(APP_ID, user, CHANNEL, ONE_TIME)
            events = await store.consent_history(APP_ID, user, CHANNEL, ONE_TIME)
            refolded = fold(APP_ID, user, CHANNEL, ONE_TIME, [(e, e.id) for e in events])
            if refolded != state or state.credits != k - sent_by_user[user]:
                bad.append(user)
    finally:
        await store.close()
    return {"users": len(sample), "differing": bad}
