"""The delivery benchmark says why pushes reach the share of the bare client's rate they do: the
CPU a push costs each process, and the ratios that budget predicts (``bench/push_costs.py``)."""

from __future__ import annotations

from bench.delivery import latency_capacity, median_round
from bench.push_costs import push_budget, why_pushes

# A round of 2026-12-07 02:02 UTC (AMD EPYC family 25 model 17, 2 vCPUs, another session's load).
ROUND = {
    "subgate_per_second": 3308.3,
    "ceiling_per_second": 4796.0,
    "loop_cpu_us_per_delivery": 77.6,
    "other_threads_cpu_us_per_delivery": 51.8,
    "workers_cpu_us_per_delivery": 110.6,
    "receiver_cpu_us_per_delivery": 121.8,
    "ceiling_client_cpu_us_per_delivery": 130.6,
    "ceiling_receiver_cpu_us_per_delivery": 99.6,
}


def test_the_budget_predicts_the_ratio_with_every_core_busy_and_with_a_core_each() -> None:
    budget = push_budget(ROUND)

    assert budget["subgate_total_us"] == 361.8  # 77.6 + 51.8 + 110.6 + 121.8
    assert budget["bare_total_us"] == 230.2
    assert budget["predicted_all_cores_busy"] == round(230.2 / 361.8, 3)
    # a core each: the service (129.4) is Subgate's slowest process, the client (130.6) the bare's
    assert budget["predicted_core_per_process"] == round(130.6 / 129.4, 3)
    assert budget["measured"] == round(3308.3 / 4796.0, 3)
    assert budget["subgate_cores_used"] == round(361.8 * 3308.3 / 1e6, 2)  # 1.20
    assert budget["bare_cores_used"] == round(230.2 * 4796.0 / 1e6, 2)  # 1.10


def test_the_line_names_each_process_and_both_predictions() -> None:
    line = why_pushes(ROUND)

    assert line.startswith("why: CPU a push, Subgate 362 µs (service loop 78, its other threads 52")
    assert "against the bare client's 230 (client 131, receiver 100)" in line
    assert "every core busy predicts 0.64, a core per process 1.01; measured 0.69" in line
    assert line.endswith("with 1.20 cores in use against the bare client's 1.10")


def test_the_explained_round_is_the_one_with_the_median_ratio() -> None:
    rounds = [ROUND | {"subgate_per_second": rate} for rate in (3000.0, 3900.0, 3400.0)]

    assert median_round(rounds)["subgate_per_second"] == 3400.0
    assert median_round(rounds[:2])["subgate_per_second"] == 3000.0


def test_latency_is_measured_at_half_of_what_the_whole_path_sustains() -> None:
    """Intake and pushes share the cores, so the end-to-end rate (4,050 taken in, 2,262
    delivered end to end) bounds the latency round, not intake's rate alone."""
    intake = {"with_destination_rps": 4050.7, "end_to_end_per_second": 2262.0}
    pushes = [{"subgate_per_second": 4633.0}, {"subgate_per_second": 4100.0}]

    assert latency_capacity(intake, pushes) == 2262.0
    slower_pushes = [{"subgate_per_second": 1800.0}]
    assert latency_capacity(intake, slower_pushes) == 1800.0
    too_few_events = {"with_destination_rps": 4050.7, "end_to_end_per_second": 0.0}
    assert latency_capacity(too_few_events, pushes) == 4050.7
