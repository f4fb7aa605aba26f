from storage.sqlite.connection import SQLiteOptions
from storage.sqlite.store import SQLiteStore

__all__ = ["SQLiteOptions", "SQLiteStore"]
