"""The sends benchmark reports Subgate's gated sends as a fraction of the send ceiling measured in
the same round at the same concurrency (``bench/sends_rounds.py``), judged on the clean load."""

from __future__ import annotations

from typing import Any

from bench.sends_rounds import plans, ratio_by_round, vs_ceiling


def _rounds(*rates: float) -> list[dict[str, Any]]:
    return [{"sends_per_second": rate} for rate in rates]


def test_a_ratio_is_taken_within_each_round_and_the_median_reported() -> None:
    # Subgate rose and the ceiling fell over the rounds: each round's own pair is compared.
    ratio = ratio_by_round([590.0, 640.0, 700.0], [1000.0, 1280.0, 875.0])

    assert ratio == {"per_round": [0.59, 0.5, 0.8], "median": 0.59}


def test_each_plan_is_compared_with_the_ceiling_at_its_own_concurrency() -> None:
    measured = plans(20_000, 3.0)
    rounds = {name: _rounds(600.0) for name in measured}
    rounds["clean-c256-callers2"] = _rounds(960.0)
    ceilings = {64: _rounds(1000.0), 256: _rounds(1500.0)}
    targets: dict[str, str] = {}

    ratios = vs_ceiling(rounds, ceilings, measured, targets)

    assert ratios["clean"]["median"] == 0.6  # 64 senders against the ceiling's 64
    assert ratios["clean-c256-callers2"]["median"] == 0.64  # 256 against 256
    assert ratios["contended"]["median"] == 0.6
    assert targets == {  # the contended load refuses half its attempts by design: not judged
        "clean: sends_at_least_0.6x_send_ceiling": "0.6 (target >= 0.6): met",
        "clean-callers1: sends_at_least_0.6x_send_ceiling": "0.6 (target >= 0.6): met",
        "clean-c256-callers2: sends_at_least_0.6x_send_ceiling": "0.64 (target >= 0.6): met",
    }
