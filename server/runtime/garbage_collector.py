"""Garbage-collector settings for a serving process (the primary and every intake worker)."""

from __future__ import annotations

import gc

# Allocations between young collections, then how many of each generation before the next one
# (CPython's default is 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 20)


def settle_garbage_collector() -> None:
    """What start-up made (keys, settings, modules, the app) lives as long as the process: freeze
    it out of the collector's way, and collect the youngest generation less often. Measured on
    the benchmarks (bench/README.md), collector pauses were most of the lookup tail and of a
    bulk lookup's time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
