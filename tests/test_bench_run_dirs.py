"""A measured run's store is always a fresh one (``bench/run_dirs.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run_dirs import fresh_run_dir


def test_a_run_gets_a_new_directory_and_a_second_run_of_the_same_name_is_refused(
    tmp_path: Path,
) -> None:
    first = fresh_run_dir(tmp_path, "subgate-c8-1")
    (first / "subgate.db").write_bytes(b"an earlier run's store")

    with pytest.raises(FileExistsError, match="each run needs its own"):
        fresh_run_dir(tmp_path, "subgate-c8-1")

    assert (first / "subgate.db").read_bytes() == b"an earlier run's store"
    assert fresh_run_dir(tmp_path, "subgate-c8-2").is_dir()
