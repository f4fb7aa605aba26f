"""The scaling benchmark's summary of its rounds (bench/scaling.py)."""

from __future__ import annotations

from bench.scaling import median_round


def test_each_size_reports_itsmedian_round_with_every_rounds_rate() -> None:
    rounds = [{"rps": 4902.4, "p99_ms": 24.1}, {"rps": 6778.4, "p99_ms": 17.6}, {"rps": 6915.4}]

    point = median_round(rounds)

    assert point["rps"] == 6778.4 and point["p99_ms"] == 17.6  # the whole round, not a mix
    assert point["rps_by_round"] == [4902.4, 6778.4, 6915.4]  # in the order they ran


def test_with_an_even_number_of_rounds_the_lower_middle_round_is_reported() -> None:
    assert median_round([{"rps": 7.0}, {"rps": 5.0}])["rps"] == 5.0
    assert median_round([{"rps": 3.0}])["rps_by_round"] == [3.0]
