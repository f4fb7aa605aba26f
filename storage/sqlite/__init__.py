"""The SQLite store: the embedded default, one file, one process.

What lives here is only what SQLite does its own way: its connections (``connection``), the
single writer thread with its group commit (``writer``, ``batch``), the writes that run as its
jobs (``consents``, ``deliveries``, ``notifications``, ``reports``, ``outbox``), the migrations
runner and the store itself. The statements both backends share, and their row decoders, are
``storage.sql``'s. Modules here may import the standard library's ``sqlite3``, aiosqlite and
``storage``'s shared modules; never asyncpg, the PostgreSQL store, the server or the verifier.
"""

from storage.sqlite.connection import SQLiteOptions
from storage.sqlite.store import SQLiteStore

__all__ = ["SQLiteOptions", "SQLiteStore"]
