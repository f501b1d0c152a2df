"""SQLite store: one file in WAL mode, driven from one dedicated thread.

``store`` (the store: worker thread, health, the Store interface), ``schema`` (tables,
migrations, opening a file), ``rows`` (statements, rows to and from the codec's values),
``files`` (the lock file, watching the file's identity, the rescue copy).
"""

from __future__ import annotations

from monitor.store.sqlite.schema import SCHEMA_VERSION
from monitor.store.sqlite.store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]
