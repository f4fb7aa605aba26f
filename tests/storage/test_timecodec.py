"""Stored times: integer epoch milliseconds, read back as the same aware UTC instant."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from storage.timecodec import from_millis, to_millis

# Year 1 to year 9999, the range a datetime holds.
_MILLIS = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999)


@given(_MILLIS)
def test_a_stored_time_reads_back_as_the_instant_it_names(millis: int) -> None:
    value = from_millis(millis)
    assert value.tzinfo is UTC
    assert value.microsecond % 1000 == 0
    assert to_millis(value) == millis
    seconds, rest = divmod(millis, 1000)
    assert value == datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest * 1000)


def test_times_before_the_epoch_count_back_from_it() -> None:
    assert from_millis(-1) == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert from_millis(0) == datetime(1970, 1, 1, tzinfo=UTC)
