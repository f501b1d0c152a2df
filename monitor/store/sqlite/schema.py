"""The SQLite file's schema: its tables, the migrations between versions, opening a file.

``PRAGMA user_version`` holds the schema version; a file of a newer version, or a database of
something else, is refused rather than changed. The columns of the ``tasks`` table follow the
codec's (``monitor.store.codec.tasks``): a file that lacks one gains it when opened, as the
codec declares it, so a new field of a task needs no migration here. The migrations are for
what changes the structure (tables, indexes, keys).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from monitor.log import get_logger
from monitor.store.base import StoreError
from monitor.store.codec.tasks import TASK_COLUMNS

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SELECT_META",
    "UPSERT_META",
    "missing_task_columns",
    "prepare",
    "statements",
    "transaction",
]

log = get_logger("monitor.store.sqlite")

SCHEMA_VERSION: Final = 5
BUSY_TIMEOUT_MS: Final = 5000

# Index i brings the schema from version i to version i + 1. Never edit a released entry:
# append a new one and bump SCHEMA_VERSION.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE IF NOT EXISTS tasks (
        sdk_app_id INTEGER NOT NULL,
        task_id TEXT NOT NULL,
        region TEXT NOT NULL,
        account TEXT NOT NULL,
        labels TEXT NOT NULL,
        interval REAL,
        registered_at REAL NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        status_since REAL NOT NULL,
        consecutive_errors INTEGER NOT NULL,
        last_error_code TEXT,
        last_error_at REAL,
        last_success_at REAL,
        last_request_id TEXT,
        storage_files INTEGER,
        last_response TEXT,
        extra TEXT NOT NULL,
        ended_at REAL,
        PRIMARY KEY (sdk_app_id, task_id)
    );
    CREATE INDEX IF NOT EXISTS tasks_by_ended_at ON tasks (ended_at)
        WHERE ended_at IS NOT NULL;

    -- AUTOINCREMENT: a seq is never handed out twice, even after the newest rows are purged.
    CREATE TABLE IF NOT EXISTS transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sdk_app_id INTEGER NOT NULL,
        task_id TEXT NOT NULL,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        at REAL NOT NULL,
        source TEXT NOT NULL,
        request_id TEXT,
        detail TEXT NOT NULL,
        FOREIGN KEY (sdk_app_id, task_id) REFERENCES tasks (sdk_app_id, task_id)
            ON DELETE CASCADE
    );
    CREATE INDEX IF NOT EXISTS transitions_by_task ON transitions (sdk_app_id, task_id, seq);

    -- No foreign key: an alert may outlive a task for a moment (its resolve being sent) and
    -- monitor-wide alerts have no task; deletion by task is explicit instead.
    CREATE TABLE IF NOT EXISTS alerts (
        fingerprint TEXT PRIMARY KEY,
        alertname TEXT NOT NULL,
        sdk_app_id INTEGER,
        task_id TEXT,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
        starts_at REAL NOT NULL,
        ends_at REAL,
        last_sent_at TEXT NOT NULL,
        resolved_sent TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS alerts_by_task ON alerts (sdk_app_id, task_id)
        WHERE task_id IS NOT NULL;
    """,
    # 2: when the newest recorded observation of each task's status was made.
    """
    ALTER TABLE tasks ADD COLUMN observed_at REAL NOT NULL DEFAULT 0;
    """,
    # 3: the upload state of each task (from upload callbacks), JSON; NULL while none came.
    """
    ALTER TABLE tasks ADD COLUMN upload TEXT;
    """,
    # 4: a relay recording's RecorderKey (registered), and the one the last answer returned.
    """
    ALTER TABLE tasks ADD COLUMN recorder_key TEXT;
    ALTER TABLE tasks ADD COLUMN answer_recorder_key TEXT;
    """,
    # 5: what the task records ('web': a web-page recording); NULL: a cloud recording.
    """
    ALTER TABLE tasks ADD COLUMN kind TEXT;
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

SELECT_META: Final = "SELECT value FROM meta WHERE key = ?"
UPSERT_META: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Set the connection up and bring the file's schema to ``SCHEMA_VERSION``."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {path} is not a SQLite database ({exc})") from exc
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path} has schema version {version}, newer than this version of "
            f"the monitor understands ({SCHEMA_VERSION}); run a newer monitor or point "
            "storage.path at another file"
        )
    if version == 0:
        foreign = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
        if foreign:
            raise StoreError(
                f"store {path} is a SQLite database of something else (it has tables "
                "but no schema version); point storage.path at another file"
            )
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        # Still safe against a crash of the process (rollback journal), but slower, and the
        # write-ahead log is not watched for removal.
        log.warning("store_not_wal", store=str(path), journal_mode=str(mode))
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if version < SCHEMA_VERSION:
        with transaction(conn):
            for script in MIGRATIONS[version:]:
                for statement in statements(script):
                    conn.execute(statement)
            conn.execute(UPSERT_META, ("schema_version", str(SCHEMA_VERSION)))
            # user_version is transactional: a crash mid-migration leaves the old number.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if missing_task_columns(conn):
        with transaction(conn):  # looked at again under the write lock
            for column in missing_task_columns(conn):
                log.info("store_column_added", store=str(path), column=column)
                conn.execute(f"ALTER TABLE tasks ADD COLUMN {column}")


def missing_task_columns(conn: sqlite3.Connection) -> list[str]:
    """The codec's task columns the ``tasks`` table lacks, each as ``name TYPE``."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    return [f"{c.name} {c.sql}" for c in TASK_COLUMNS if c.name not in present]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a transaction never fails half-way on it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # Some errors (a full disk) already rolled back; a second ROLLBACK would hide them.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def statements(script: str) -> Iterator[str]:
    """Split a migration script: executescript would commit the surrounding transaction."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
