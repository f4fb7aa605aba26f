"""What the bench records of a machine beyond its CPU: how its cores idle (``bench.machine``),
the time the host took away during a measurement (``bench.quiet``), the intake rounds the host
or the server stalled, and the rounds it disturbed, taken again (``bench.intake``). On texts
such a VM really produces, and on this machine's own /proc/stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import intake
from bench.intake_rounds import MEDIAN_KEYS, STALL_SECONDS, median_of
from bench.machine import idle_setup
from bench.quiet import DISTURBED_SHARE, Foreign, busy_seconds, describe, stolen_seconds

# The summed line of /proc/stat on the AMD EPYC VM of 2026-12-07 (family 25, model 1), in ticks:
# user nice system idle iowait irq softirq steal guest guest_nice.
STAT = (
    "cpu  160684 0 36581 207458 6910 0 8420 740 0 0\n"
    "cpu0 80000 0 18000 100000 3000 0 4000 370 0 0\n"
)


def test_the_time_the_host_took_is_the_steal_column_of_the_summed_line() -> None:
    ticks = os.sysconf("SC_CLK_TCK")

    assert stolen_seconds(STAT) == 740 / ticks
    assert busy_seconds(STAT) == (160684 + 0 + 36581) / ticks


def test_a_kernel_that_reports_no_steal_column_took_nothing() -> None:
    assert stolen_seconds("cpu  100 0 50 1000 0 0 0\n") == 0.0


def test_a_measurement_records_the_hosts_share_beside_others_work() -> None:
    watch = Foreign(os.getpid())

    result = watch.stop()

    assert 0.0 <= result["stolen_core_share"] <= (os.cpu_count() or 1)  # this machine's own
    shares = [float(result["foreign_core_share"]), float(result["stolen_core_share"])]
    assert result["disturbed"] == (max(shares) > DISTURBED_SHARE)


def test_what_disturbed_a_measurement_names_the_host_only_when_it_took_time() -> None:
    quiet = {"foreign_core_share": 0.02, "stolen_core_share": 0.001}
    stolen = {"foreign_core_share": 0.0, "stolen_core_share": 0.31}

    assert describe(quiet) == "others used 2% of a core"
    assert describe(stolen) == "others used 0% of a core, the host took 31%"
    assert describe({"foreign_core_share": 0.2}) == "others used 20% of a core"  # older results


def _sys(root: Path, driver: str | None, polling: str | None) -> Path:
    if driver is not None:
        (root / "devices/system/cpu/cpuidle").mkdir(parents=True)
        (root / "devices/system/cpu/cpuidle/current_driver").write_text(driver + "\n")
    if polling is not None:
        (root / "module/haltpoll/parameters").mkdir(parents=True)
        (root / "module/haltpoll/parameters/guest_halt_poll_ns").write_text(polling + "\n")
    return root


def test_the_idle_setup_says_whether_a_vms_guest_halt_polling_is_on(tmp_path: Path) -> None:
    assert idle_setup(_sys(tmp_path / "a", "haltpoll", "0")) == "haltpoll, guest halt polling off"
    assert (
        idle_setup(_sys(tmp_path / "b", "haltpoll", "200000"))
        == "haltpoll, guest halt polling up to 200,000 ns"
    )
    assert idle_setup(_sys(tmp_path / "c", "intel_idle", None)) == "intel_idle"
    assert idle_setup(tmp_path / "nothing") == "unknown"


def _round(rps: float, overran: float) -> dict[str, float]:
    measured = {key: 1.0 for key in MEDIAN_KEYS if key != "rps"}
    return {"rps": rps, "errors": 0, "overran_seconds": overran, **measured}


def test_rounds_whose_load_outlasted_its_time_are_counted_as_stalled() -> None:
    # The second round of the 12:49 run: wrk's 10 s took 16.71 s, 64 requests timed out.
    rounds = [_round(3918, 0.02), _round(2199, 6.71), _round(2781, STALL_SECONDS)]

    summary = median_of(rounds)

    assert summary["stalled_rounds"] == 1  # a second late is a slow round, not yet a stall
    assert summary["rps"] == 2781


def test_an_intake_round_the_host_disturbed_is_taken_again_as_a_new_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in the 14:25 run of 2026-12-07: a ceiling round while the host took 41 % of a core.
    tries: list[tuple[str, int]] = []
    stolen = iter([0.412, 0.03])

    def measure(*args: object) -> dict[str, object]:
        target, index, attempt = args[0], args[5], args[6]
        assert isinstance(target, str) and isinstance(attempt, int)
        tries.append((target, attempt))
        share = next(stolen)
        return {
            "rps": 3275 if share > DISTURBED_SHARE else 4612,
            "foreign_core_share": 0.0,
            "stolen_core_share": share,
            "disturbed": share > DISTURBED_SHARE,
            "index": index,
        }

    monkeypatch.setattr(intake, "measure", measure)
    plan = intake.Plan(seconds=1, runs=1, connections=(64,), bodies=10)

    bodies = Path("bodies.txt")  # neither it nor a workspace is read: measure is replaced
    result = intake.quietest_round("ceiling", 64, None, plan, bodies, 0)  # type: ignore[arg-type]

    assert tries == [("ceiling", 0), ("ceiling", 1)]
    assert result["rps"] == 4612
    assert result["tries"] == 2
