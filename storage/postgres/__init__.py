"""The PostgreSQL store: several Subgate processes on one database (asyncpg, a pool each).

What lives here is only what PostgreSQL does its own way: the pool and the retried transaction
(``connection``), the migrations runner under an advisory lock, and the writes that hold their
guarantees with constraints and row locks (``consents``, ``deliveries``, ``notifications``,
``outbox``), the group commit of notifications (``batches``, ``intake_rows``, and
``lost_commits`` for a connection lost around a COMMIT), and the store itself. The statements
both backends share, and their row decoders, are ``storage.sql``'s. Modules here may import
asyncpg and ``storage``'s shared modules; never sqlite3, the SQLite store, the server or the
verifier.
"""

from storage.postgres.connection import PostgresOptions
from storage.postgres.store import PostgresStore

__all__ = ["PostgresOptions", "PostgresStore"]
