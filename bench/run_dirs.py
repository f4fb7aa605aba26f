"""Where one measured run keeps its store: a directory of its own, never one used before."""

from __future__ import annotations

from pathlib import Path


def fresh_run_dir(root: Path, name: str) -> Path:
    """``root / name``, made now. A directory that exists is refused: a run on an earlier run's
    database would post the same signed bodies again, and duplicates store nothing, so the run
    would measure a cheaper server than the one it names."""
    path = root / name
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise FileExistsError(
            f"{path} holds an earlier run's store: each run needs its own"
        ) from None
    return path
