"""The PostgreSQL store: several Subgate processes on one database (asyncpg, a pool each)."""

from storage.postgres.connection import PostgresOptions
from storage.postgres.store import PostgresStore

__all__ = ["PostgresOptions", "PostgresStore"]
