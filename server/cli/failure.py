"""The one way a command fails: a short sentence for stderr and an exit status, never a
traceback."""

from __future__ import annotations

USAGE_STATUS = 2  # what argparse answers a command line it cannot use


class CommandFailed(Exception):
    """Why the command cannot go on, in one line; ``status`` is the process's exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    """A message as one line: whatever spans several (a library's error) is joined by '; '."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
