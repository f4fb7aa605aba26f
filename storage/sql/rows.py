"""What a result row is to the shared decoders: values read by position.

SQLite's rows are tuples and asyncpg's ``Record`` reads by position too, so one decoder serves
both as long as it reads the columns its statement selects, in their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class Row(Protocol):
    """A row of either driver: indexable by column position, iterable over its values."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...
