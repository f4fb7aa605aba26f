"""What the server's group commit did during a run, read from its own ``/metrics``.

Intake's loop sits idle while every request in flight waits for one commit (bench/README.md,
the convoy). The loop's idle share says that it waited; these figures say on what: how many
notifications each commit held, how long a commit took from the hand-off to the writer until
its answer was back on the loop, and what share of the run the writer had a commit out.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

COMMIT_METRIC = "subgate_store_commit_seconds"
# What ``commit_stats`` gives a run (the bench takes each one's median over rounds).
COMMIT_KEYS = ("notifications_per_commit", "commit_ms", "writer_busy_share")


@dataclass(frozen=True)
class CommitTotals:
    """The commit histogram's running count and sum, as one scrape read them."""

    commits: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> CommitTotals:
        """From a Prometheus text exposition; a server that has not committed yet has none."""
        commits = seconds = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != COMMIT_METRIC:
                continue
            for sample in family.samples:
                if sample.name == f"{COMMIT_METRIC}_count":
                    commits = sample.value
                elif sample.name == f"{COMMIT_METRIC}_sum":
                    seconds = sample.value
        return cls(commits, seconds)

    @classmethod
    def scrape(cls, port: int) -> CommitTotals:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            return cls.parse(answer.read().decode("utf-8"))


def commit_stats(
    before: CommitTotals | None, after: CommitTotals | None, requests: int, seconds: float
) -> dict[str, Any]:
    """The run's commits: notifications a commit, milliseconds a commit, and the writer's share
    of the run's wall time (one commit is out at a time on SQLite). Empty without a commit, or
    for a server that was not scraped."""
    if before is None or after is None:
        return {}
    commits = after.commits - before.commits
    if commits <= 0:
        return {}
    spent = after.seconds - before.seconds
    return {
        "notifications_per_commit": round(requests / commits, 1),
        "commit_ms": round(spent / commits * 1000, 3),
        "writer_busy_share": round(spent / max(seconds, 1e-9), 3),
    }


def describe(entry: dict[str, Any]) -> str:
    """The commit figures of one run for the ``why`` line; empty when it has none."""
    if "notifications_per_commit" not in entry:
        return ""
    return (
        f"; its commits held {entry['notifications_per_commit']:.1f} notifications and took "
        f"{entry['commit_ms']:.2f} ms each, one out {entry['writer_busy_share']:.0%} of the run"
    )
