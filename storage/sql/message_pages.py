"""Statements of a listing of an app's messages: newest first, a page at a time, by keyset.

A page continues below the last message of the one before (its creation time, then its id), so
reading on never skips or repeats a message, whatever was sent in between, and never counts the
rows before it (no OFFSET). One statement per filter, so that each can use its own index.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.sql.outbox import MESSAGE_COLUMNS

# Below every real (created_at, id): where the first page starts.
FIRST_PAGE_BELOW = (2**62, "")


def _page(filters: str) -> str:
    return (
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ?{filters} "
        "AND (created_at < ? OR (created_at = ? AND id < ?)) "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )


@dataclass(frozen=True, slots=True)
class MessagePageStatements:
    """A page of the app's messages: of any status and channel, of one status, of one channel,
    or of both; the parameters end with (created_at, created_at, id) of the place and the
    limit."""

    any_message: str = _page("")
    of_status: str = _page(" AND status = ?")
    of_channel: str = _page(" AND channel = ?")
    of_status_and_channel: str = _page(" AND status = ? AND channel = ?")

    def choose(self, status: str | None, channel: str | None) -> str:
        """The statement for the filters given (their values go in that order)."""
        if status is not None and channel is not None:
            return self.of_status_and_channel
        if status is not None:
            return self.of_status
        return self.any_message if channel is None else self.of_channel


MESSAGE_PAGES = MessagePageStatements()
