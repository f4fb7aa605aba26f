"""The bench reads what the group commit did from the server's own /metrics, and says it."""

from __future__ import annotations

from prometheus_client import generate_latest

from bench.commits import CommitTotals, commit_stats, describe
from server.ops.metrics import Metrics


def _exposition(commits: list[tuple[float, int]]) -> str:
    metrics = Metrics()
    for seconds, jobs in commits:
        metrics.observe_commit(seconds, jobs)
    return generate_latest(metrics.registry).decode("utf-8")


def test_the_commit_totals_are_read_from_the_servers_metrics() -> None:
    totals = CommitTotals.parse(_exposition([(0.001, 60), (0.003, 64)]))

    assert totals.commits == 2
    assert abs(totals.seconds - 0.004) < 1e-12


def test_a_server_that_has_not_committed_has_no_commits() -> None:
    assert CommitTotals.parse(_exposition([])) == CommitTotals(0.0, 0.0)


def test_a_runs_commits_are_the_difference_between_two_scrapes() -> None:
    before = CommitTotals(commits=10, seconds=0.5)
    after = CommitTotals(commits=110, seconds=1.5)  # 100 commits, 1 s of them, in a 10 s run

    stats = commit_stats(before, after, requests=6_000, seconds=10.0)

    assert stats == {
        "notifications_per_commit": 60.0,
        "commit_ms": 10.0,
        "writer_busy_share": 0.1,
    }
    line = describe(stats)
    assert "60.0 notifications" in line and "10.00 ms each" in line and "10% of the run" in line


def test_no_scrape_or_no_commit_says_nothing() -> None:
    same = CommitTotals(commits=5, seconds=0.1)

    assert commit_stats(None, same, requests=100, seconds=1.0) == {}
    assert commit_stats(same, same, requests=100, seconds=1.0) == {}
    assert describe({}) == ""
