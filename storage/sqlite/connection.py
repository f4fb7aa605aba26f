"""Opening SQLite connections with the settings that make Subgate's guarantees hold: the
writer's (which migrates the file first), the reader thread's, and the event loop's own."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosqlite

from storage.errors import StorageUnavailable
from storage.sqlite.migrate import apply_migrations
from storage.sqlite.writer import SerialWriter

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
# Prepared statements kept per connection (Python's default is 128): the writer's bulk writes
# have one statement text per chunk size, up to 64 each for the read, the insert and the read-back.
STATEMENT_CACHE = 512


# How much of the database file a read-only connection maps into memory by default: SQLite's own
# cap in most builds (SQLITE_MAX_MMAP_SIZE, 0x7fff0000), which also caps any larger request.
DEFAULT_READ_MMAP_MB = 2048


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """Where the file is, and how durable and how patient its connections are."""

    path: Path
    synchronous: str = "FULL"
    busy_timeout_ms: int = 5000
    # Memory-mapped reads for the read-only connections (PRAGMA mmap_size); 0: plain reads.
    read_mmap_mb: int = DEFAULT_READ_MMAP_MB


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ValueError("a SQLite URL looks like sqlite:///./data/subgate.db")
    path = unquote(parts.path)[1:]
    if not path:
        raise ValueError("the SQLite URL names no file")
    return Path(path)


def connect(options: SQLiteOptions, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode with explicit transactions (``isolation_level=None``)."""
    if readonly:
        connection = sqlite3.connect(
            _read_only_uri(options),
            uri=True,
            isolation_level=None,
            cached_statements=STATEMENT_CACHE,
        )
    else:
        options.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            options.path, isolation_level=None, cached_statements=STATEMENT_CACHE
        )
        connection.execute("PRAGMA journal_mode=WAL")
    if options.synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
    connection.execute(f"PRAGMA synchronous={options.synchronous}")
    connection.execute(f"PRAGMA busy_timeout={int(options.busy_timeout_ms)}")
    connection.execute("PRAGMA foreign_keys=ON")
    if readonly:
        connection.execute(read_mmap_pragma(options))
    return connection


def read_mmap_pragma(options: SQLiteOptions) -> str:
    """Reads through a memory map instead of a ``pread`` per page: a key lookup in a ledger
    larger than SQLite's page cache touches pages the OS has cached without a system call each
    (bench/README.md). The writer never maps: SQLite writes with ``write()`` either way."""
    return f"PRAGMA mmap_size={int(options.read_mmap_mb) * 1024 * 1024}"


def connect_point_reader(options: SQLiteOptions) -> sqlite3.Connection:
    """Read-only and never waiting on a lock (``busy_timeout`` 0): the connection the event
    loop's own thread reads single rows with, falling back to the reader thread when busy."""
    connection = connect(replace(options, busy_timeout_ms=0), readonly=True)
    connection.execute("PRAGMA query_only=ON")
    return connection


async def open_connections(
    options: SQLiteOptions,
) -> tuple[SerialWriter, aiosqlite.Connection, sqlite3.Connection]:
    """The writer (on a migrated file), the reader and the point reader of one store; each
    opened only once the one before it is, and all closed again if one cannot be."""
    try:
        writer = await SerialWriter.open(lambda: _migrated(options))
    except (sqlite3.Error, OSError) as error:  # OSError: its folder cannot be made
        raise StorageUnavailable(f"cannot open {options.path}: {error}") from error
    try:
        reader = await _open_reader(options)
        try:
            point_reader = connect_point_reader(options)
        except BaseException:
            await reader.close()
            raise
    except BaseException as error:
        await writer.close()
        if isinstance(error, sqlite3.Error):
            raise StorageUnavailable(f"cannot open {options.path}: {error}") from error
        raise
    return writer, reader, point_reader


def _migrated(options: SQLiteOptions) -> sqlite3.Connection:
    connection = connect(options)
    apply_migrations(connection)
    connection.execute(WRITER_TEMP_STORE)  # after: a migration's index build sorts on disk
    return connection


# The writer's savepoints (one per job of a batch: storage/sqlite/batch.py) keep the pages they
# change again in a sub-journal, which SQLite moves to a file of its own in the temporary
# directory once it outgrows a small buffer: a file created, unlinked, written and closed per
# transaction, on the path of every commit. In memory it is only bytes; the writer's
# transactions are bounded by its batches, so the memory is too. Migrations (which may build an
# index over every row) and the readers keep the default: their sorts may grow with the data.
WRITER_TEMP_STORE = "PRAGMA temp_store=MEMORY"


async def _open_reader(options: SQLiteOptions) -> aiosqlite.Connection:
    """The reader thread's connection (the writer created the file and WAL already)."""
    timeout = options.busy_timeout_ms / 1000
    reader = await aiosqlite.connect(_read_only_uri(options), uri=True, timeout=timeout)
    try:
        await reader.execute(read_mmap_pragma(options))
    except BaseException:
        await reader.close()
        raise
    return reader


def _read_only_uri(options: SQLiteOptions) -> str:
    return f"{options.path.resolve().as_uri()}?mode=ro"
