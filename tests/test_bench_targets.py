"""The intake benchmark judges the issue's targets from the ratios of one run, per setup."""

from __future__ import annotations

from typing import Any

from bench import intake


def _entry(rps: float, p99_ms: float) -> dict[str, Any]:
    return {"rps": rps, "p99_ms": p99_ms}


def test_each_setup_is_judged_on_its_own_ratios() -> None:
    results = {
        "ceiling@c64": _entry(8000, 12.0),
        "naive@c64": _entry(1000, 80.0),
        "subgate@c64": _entry(6800, 19.0),  # 0.85 of the ceiling, p99 1.58x
        "subgate@c8": _entry(4000, 4.5),
        "subgate-w1@c64": _entry(7200, 12.0),  # 0.90 exactly: reaching the bound meets it
        "subgate-w2@c64": _entry(7600, 13.0),  # 0.95, 1.12x one process: the better workers
        "subgate-w2@c8": _entry(3500, 5.5),
    }
    verdicts = intake.targets(results, intake.ratios(results))

    assert verdicts == {
        "intake_at_least_0.9x_ceiling_c64": "MISSED by 6%",
        "intake_at_least_10x_naive_c64": "MISSED by 32%",
        "p99_under_1.5x_ceiling_c64": "MISSED by 6%",
        "p99_c8_under_5ms": "met",
        "subgate-w1: intake_at_least_0.9x_ceiling_c64": "met",
        "subgate-w1: intake_at_least_10x_naive_c64": "MISSED by 28%",
        "subgate-w1: p99_under_1.5x_ceiling_c64": "met",
        "subgate-w2: intake_at_least_0.9x_ceiling_c64": "met",
        "subgate-w2: intake_at_least_10x_naive_c64": "MISSED by 24%",
        "subgate-w2: p99_under_1.5x_ceiling_c64": "met",
        "subgate-w2: p99_c8_under_5ms": "MISSED by 10%",
        "intake_workers_at_least_1.4x_one_process_c64": "MISSED by 20%",
    }


def test_workers_are_judged_on_the_better_setup() -> None:
    results = {
        "subgate@c64": _entry(5000, 10.0),
        "subgate-w1@c64": _entry(7500, 10.0),  # 1.5x one process
        "subgate-w2@c64": _entry(6000, 10.0),  # 1.2x
    }
    verdicts = intake.targets(results, intake.ratios(results))

    assert verdicts == {"intake_workers_at_least_1.4x_one_process_c64": "met"}


def test_a_run_of_some_targets_judges_only_what_it_measured() -> None:
    results = {"ceiling@c64": _entry(8000, 12.0), "subgate@c64": _entry(7500, 15.0)}

    assert intake.targets(results, intake.ratios(results)) == {
        "intake_at_least_0.9x_ceiling_c64": "met",
        "p99_under_1.5x_ceiling_c64": "met",
    }
