"""The lookup benchmark's target lines: each load's p99 against 2 ms, with the lookup ceiling's
own p99 at that load beside it (``bench/lookup.py``)."""

from __future__ import annotations

from bench.lookup import targets


def test_each_load_is_judged_with_the_ceilings_own_p99_beside_it() -> None:
    # The quick run of 2026-12-06 14:37 UTC on a shared machine (RSA probe 930 signs/s).
    http = {"c8": {"p99_ms": 4.67}, "c16_paced8ms": {"p99_ms": 1.23}}
    ceiling = {"c8": {"p99_ms": 4.3}}

    lines = targets(http, {"p99_ms": 56.982}, ceiling)

    assert lines == {
        "http_single_p99_c8_under_2.0ms": (
            "4.67 ms (target < 2 ms): MISSED by 134% (the lookup ceiling's own p99 here: 4.30 ms)"
        ),
        "http_single_p99_c16_paced8ms_under_2.0ms": "1.23 ms (target < 2 ms): met",
        "http_bulk_p99_under_50.0ms": "57 ms (target < 50 ms): MISSED by 14%",
    }


def test_a_load_measured_with_its_cpu_says_the_rates_and_cpu_beside_the_ceilings() -> None:
    # The lookup run of 2026-12-07 01:48 UTC (AMD EPYC family 25 model 17, quiet).
    http = {"c8": {"p99_ms": 3.17, "rps": 5115.5, "cpu_us_per_request": 193.9}}
    ceiling = {"c8": {"p99_ms": 1.36, "rps": 16492.5, "cpu_us_per_request": 59.2}}

    line = targets(http, {"p99_ms": 24.7}, ceiling)["http_single_p99_c8_under_2.0ms"]

    assert line == (
        "3.17 ms (target < 2 ms): MISSED by 58% (the lookup ceiling's own p99 here: 1.36 ms; "
        "5116 against 16492 lookups a second, 194 against 59 us of CPU each)"
    )
