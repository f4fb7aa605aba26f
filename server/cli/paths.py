"""Where the commands keep dev mode's files: ``./data/`` below the directory they run in (the
SQLite file, the dev keys and the dev API token)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path("data")
