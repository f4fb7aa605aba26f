"""What a result row is to the shared decoders: values read by position.

SQLite's rows are tuples and asyncpg's ``Record`` reads by position too, so one decoder serves
both as long as it reads the columns its statement selects, in their order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, overload


class Row(Protocol):
    """A row of either driver: indexable by column position (a slice: the values of several
    columns in a row), iterable over its values."""

    @overload
    def __getitem__(self, index: int, /) -> Any: ...

    @overload
    def __getitem__(self, index: slice, /) -> Sequence[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...
