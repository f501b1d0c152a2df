"""SQLite store: one file in WAL mode, driven from one dedicated thread.

Every statement runs on a single worker thread, so the event loop never waits on the disk and
writes are serialised in the order they were called. Rows are taken from the (mutable) tasks
on the event loop at call time, in chunks that yield to the loop, under a lock that keeps the
submission order equal to the call order: a transition recorded while a large batch is being
read can never be overwritten by an older copy of its task.

One daemon per file: the store holds an exclusive lock on ``<file>.lock`` while it is open, so
a second daemon pointed at the same file is refused instead of interleaving its writes.

Durability: WAL with ``synchronous=NORMAL`` makes every committed transaction survive a crash
of the process (``kill -9``); only an operating system crash or power loss can take back the
last commits, which is the guarantee SPEC section 6 asks for.

Health: the store knows when it cannot take writes, refuses them meanwhile (StoreError, nothing
changed) and says why (``probe``):

* A write that fails because of the disk (full, read-only, I/O error) marks the store down at
  once. While down, every write is refused, and each ``probe`` tries one small write: when it
  succeeds (space was freed, the file system is writable again) the store is up again.
* The store remembers the device and inode of its database file (a descriptor it keeps open),
  its write-ahead log and its lock file. ``probe``, and every write right after its commit,
  compare them with what the paths name now. A file removed or replaced under the running
  daemon is never written again: the store is down for good (``StoreHealth.restart``), and it
  saves everything its connection still holds, the removed file's content, to
  ``<file>.rescued-<UTC time>`` beside it (retried while that fails), so an operator can put it
  back before a restart. Nothing is ever started afresh at the path while it runs. A write
  whose commit finds its file gone is answered with an error (it is in the copy, but was never
  acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from monitor.log import get_logger
from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord, StoreError, StoreHealth
from monitor.store.codec import (
    HEALTH_FIELDS,
    SPEC_FIELDS,
    TASK_FIELDS,
    TRANSITION_FIELDS,
    TaskDecoder,
    alert_of,
    alert_values,
    answer_text,
    check_transition,
    decoded,
    dumps,
    health_values,
    loads_dict,
    spec_values,
    transition_of,
    transition_values,
)

T = TypeVar("T")

log = get_logger(__name__)

SCHEMA_VERSION: Final = 3

# Rows converted on the event loop between two yields: small enough to keep each step to a
# few milliseconds, large enough that yielding costs nothing measurable.
_CHUNK: Final = 500
_BUSY_TIMEOUT_MS: Final = 5000
# A rescue copy that could not be written is tried again this often (seconds).
_RESCUE_RETRY_SECONDS: Final = 10.0
# Primary SQLite result codes that say the disk cannot take (or give back) the data now:
# SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN,
# SQLITE_NOTADB. Any of them marks the store down until a probe write succeeds.
_DISK_FAILURES: Final = frozenset({3, 8, 10, 11, 13, 14, 26})

# Index i brings the schema from version i to version i + 1. Never edit a released entry:
# append a new one and bump SCHEMA_VERSION.
_MIGRATIONS: Final[tuple[str, ...]] = (
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
    # 3: the upload state of each task (SPEC section 8), JSON; NULL while no upload event came.
    """
    ALTER TABLE tasks ADD COLUMN upload TEXT;
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

# Task statements name their columns in the codec's order (the table's own column order is
# the schema's): a row is the codec's spec values followed by its health values. Assembled
# from the codec's field names only (constants, never input): hence the noqa S608 below.
_TASK_COLUMNS: Final = ", ".join(TASK_FIELDS)
_TASK_UPDATES: Final = ", ".join(f"{name} = excluded.{name}" for name in TASK_FIELDS[2:])
_UPSERT_TASK: Final = (
    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * len(TASK_FIELDS))}) "  # noqa: S608
    f"ON CONFLICT (sdk_app_id, task_id) DO UPDATE SET {_TASK_UPDATES}"
)
_UPDATE_HEALTH: Final = (
    "UPDATE tasks SET "  # noqa: S608
    + ", ".join(f"{name} = ?" for name in HEALTH_FIELDS)
    + " WHERE sdk_app_id = ? AND task_id = ?"
)
_SELECT_TASKS: Final = f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY sdk_app_id, task_id"  # noqa: S608
_SELECT_TASK: Final = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE sdk_app_id = ? AND task_id = ?"  # noqa: S608

_DELETE_TASK_ALERTS: Final = "DELETE FROM alerts WHERE sdk_app_id = ? AND task_id = ?"
# Transitions go with their task by ON DELETE CASCADE.
_DELETE_TASK: Final = "DELETE FROM tasks WHERE sdk_app_id = ? AND task_id = ?"

# Purgeable: in a final status and ended before the cutoff. Both, because a task that ended and
# was registered again is live even if a stale ended_at were left behind.
_SELECT_PURGEABLE: Final = """
    SELECT sdk_app_id, task_id FROM tasks
    WHERE ended_at < ? AND status IN ('Ended', 'Expired', 'Removed')
    ORDER BY sdk_app_id, task_id
"""
_DELETE_PURGEABLE_ALERTS: Final = """
    DELETE FROM alerts WHERE task_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM tasks
        WHERE tasks.sdk_app_id = alerts.sdk_app_id AND tasks.task_id = alerts.task_id
            AND tasks.ended_at < ? AND tasks.status IN ('Ended', 'Expired', 'Removed')
    )
"""
_DELETE_PURGEABLE: Final = """
    DELETE FROM tasks WHERE ended_at < ? AND status IN ('Ended', 'Expired', 'Removed')
"""

_INSERT_TRANSITION: Final = """
    INSERT INTO transitions
        (sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
# LIMIT -1 is SQLite for "no limit".
_SELECT_TASK_TRANSITIONS_NEWEST: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions WHERE sdk_app_id = ? AND task_id = ? ORDER BY seq DESC LIMIT ?
"""
_SELECT_TASK_TRANSITIONS_OLDEST: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions WHERE sdk_app_id = ? AND task_id = ? ORDER BY seq ASC LIMIT ?
"""
_SELECT_RECENT_TRANSITIONS: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions ORDER BY seq DESC LIMIT ?
"""

_UPSERT_ALERT: Final = """
    INSERT OR REPLACE INTO alerts (
        fingerprint, alertname, sdk_app_id, task_id, labels, annotations, state, starts_at,
        ends_at, last_sent_at, resolved_sent
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SELECT_ALERTS: Final = """
    SELECT
        fingerprint, alertname, sdk_app_id, task_id, labels, annotations, state, starts_at,
        ends_at, last_sent_at, resolved_sent
    FROM alerts ORDER BY fingerprint
"""
_DELETE_ALERT: Final = "DELETE FROM alerts WHERE fingerprint = ?"

_SELECT_META: Final = "SELECT value FROM meta WHERE key = ?"
_UPSERT_META: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


# --- rows <-> records: the codec's values, dicts and lists as JSON text ----------------------

_STORE: Final = "sqlite"


def _text_or_empty(value: dict[str, Any]) -> str:
    return dumps(value) if value else "{}"


def _task_row(task: Task) -> list[Any]:
    row = spec_values(task)
    row[_LABELS] = _text_or_empty(row[_LABELS])
    row[_EXTRA] = _text_or_empty(row[_EXTRA])
    if row[_UPLOAD] is not None:
        row[_UPLOAD] = dumps(row[_UPLOAD])
    row.extend(health_values(task, answer_text))
    return row


def _health_row(task: Task) -> list[Any]:
    row = health_values(task, answer_text)
    row.append(task.sdk_app_id)
    row.append(task.task_id)
    return row


_LABELS: Final = SPEC_FIELDS.index("labels")
_EXTRA: Final = SPEC_FIELDS.index("extra")
_UPLOAD: Final = SPEC_FIELDS.index("upload")
_DETAIL: Final = TRANSITION_FIELDS.index("detail")


def _row_name(row: Any) -> str:
    return f"{row[0]}/{row[1]}"


def _transition_row(t: Transition) -> list[Any]:
    row = transition_values(t)
    row[_DETAIL] = dumps(row[_DETAIL])
    return row


def _transition_from_row(row: tuple[Any, ...]) -> Transition | None:
    def decode() -> Transition:
        values = list(row[1:])
        values[_DETAIL] = loads_dict(values[_DETAIL])
        return transition_of(row[0], values, _STORE)

    return decoded(decode, _STORE, f"transition #{row[0]}")


def _alert_row(r: AlertRecord) -> tuple[Any, ...]:
    (alertname, labels, annotations, state, starts_at, ends_at, task, last_sent_at, resolved) = (
        alert_values(r)
    )
    return (
        r.fingerprint,
        alertname,
        None if task is None else task[0],
        None if task is None else task[1],
        dumps(labels),
        dumps(annotations),
        state,
        starts_at,
        ends_at,
        dumps(last_sent_at),
        dumps(resolved),
    )


def _alert_from_row(row: tuple[Any, ...]) -> AlertRecord | None:
    def decode() -> AlertRecord:
        (fingerprint, alertname, app, task_id, labels, annotations, state, starts, ends) = row[:9]
        values = (
            alertname,
            loads_dict(labels),
            loads_dict(annotations),
            state,
            starts,
            ends,
            None if task_id is None else (app, task_id),
            loads_dict(row[9]),
            json.loads(row[10]),
        )
        return alert_of(fingerprint, values, _STORE)

    return decoded(decode, _STORE, f"alert {row[0]}")


async def _rows(items: Sequence[T], convert: Callable[[T], Sequence[Any]]) -> list[Any]:
    """Convert on the event loop, yielding between chunks so a large batch never stalls it."""
    rows: list[Any] = []
    for start in range(0, len(items), _CHUNK):
        if start:
            await asyncio.sleep(0)
        rows.extend(convert(item) for item in items[start : start + _CHUNK])
    return rows


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


# --- the store ---------------------------------------------------------------------------------


class SqliteStore:
    """The embedded store (SPEC section 6). See the module docstring for its threading model."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._order: asyncio.Lock | None = None
        # Touched only on the worker thread.
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        # The database file the connection holds (kept open to compare it with the path) and
        # the write-ahead log's (device, inode) when the store opened.
        self._db_fd: int | None = None
        self._wal_id: tuple[int, int] | None = None
        # Why writes fail now (recoverable), or why the file is gone (for good).
        self._failure: str | None = None
        self._gone: str | None = None
        self._rescued: Path | None = None
        self._rescue_error: str | None = None
        self._rescue_tried: float | None = None

    def __repr__(self) -> str:
        state = "open" if self._executor is not None else "closed"
        return f"SqliteStore({str(self.path)!r}, {state})"

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            raise StoreError(f"store {self.path} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-sqlite")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._guarded, self._open_sync)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        self._executor = executor
        self._order = asyncio.Lock()

    async def close(self) -> None:
        if self._executor is None or self._order is None:
            return
        executor = self._executor
        async with self._order:
            # Jobs run in submission order, so every write called before close lands first.
            self._executor = None
            future = asyncio.get_running_loop().run_in_executor(
                executor, self._guarded, self._close_sync
            )
        try:
            await future
        finally:
            executor.shutdown(wait=True)

    def _open_sync(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"store {self.path} is a directory; storage.path must name a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"store {self.path}: cannot create its directory ({exc.strerror})"
            ) from None
        self._take_lock()
        try:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                self._prepare(conn)
                self._watch(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._unwatch()
            self._release_lock()
            raise
        self._conn = conn
        self._failure = self._gone = self._rescue_error = None
        self._rescued = self._rescue_tried = None

    @property
    def wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _watch(self, conn: sqlite3.Connection) -> None:
        """Remember which files the connection holds, to notice when the paths change."""
        try:
            self._db_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise StoreError(f"store {self.path}: cannot open it ({exc.strerror})") from None
        # A read opens the write-ahead log (WAL mode), which then lives as long as the
        # connection does.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        try:
            wal = os.stat(self.wal_path)
        except FileNotFoundError:
            self._wal_id = None  # not in WAL mode (a file system without shared memory)
        else:
            self._wal_id = (wal.st_dev, wal.st_ino)
        # The connection and the descriptor must name the same file: the path did not change
        # between the two opens (the lock keeps other monitors away).
        if self._moved() is not None:
            raise StoreError(f"store {self.path} was replaced while it was being opened")

    def _unwatch(self) -> None:
        # Only after the connection is closed: closing any descriptor of a file drops the
        # POSIX locks the process holds on it, SQLite's included.
        fd, self._db_fd = self._db_fd, None
        self._wal_id = None
        if fd is not None:
            os.close(fd)

    def _moved(self) -> str | None:
        """Why the files the store holds are no longer what their paths name, or None."""
        watched: list[tuple[str, Path, tuple[int, int]]] = []
        try:
            if self._db_fd is not None:
                st = os.fstat(self._db_fd)
                watched.append(("database file", self.path, (st.st_dev, st.st_ino)))
            if self._wal_id is not None:
                watched.append(("write-ahead log", self.wal_path, self._wal_id))
            if self._lock_fd is not None:
                st = os.fstat(self._lock_fd)
                watched.append(("lock file", self.lock_path, (st.st_dev, st.st_ino)))
        except OSError:
            return None  # cannot tell now; the next check looks again
        for what, path, held in watched:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return f"its {what} {path} was removed or moved away"
            except OSError:
                continue  # cannot tell now; the next check looks again
            if (st.st_dev, st.st_ino) != held:
                return f"its {what} {path} was replaced by another file"
        return None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _take_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"store {self.path}: cannot create its lock file {self.lock_path} ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(
                f"store {self.path} is in use by another running monitor "
                f"(it holds the lock {self.lock_path})"
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.path} is not a SQLite database ({exc})") from exc
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {version}, newer than this version of "
                f"the monitor understands ({SCHEMA_VERSION}); run a newer monitor or point "
                "storage.path at another file"
            )
        if version == 0:
            foreign = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if foreign:
                raise StoreError(
                    f"store {self.path} is a SQLite database of something else (it has tables "
                    "but no schema version); point storage.path at another file"
                )
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            # Still safe against a crash of the process (rollback journal), but slower, and the
            # write-ahead log is not watched for removal.
            log.warning("store_not_wal", store=str(self.path), journal_mode=str(mode))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if version < SCHEMA_VERSION:
            with _transaction(conn):
                for script in _MIGRATIONS[version:]:
                    for statement in _statements(script):
                        conn.execute(statement)
                conn.execute(_UPSERT_META, ("schema_version", str(SCHEMA_VERSION)))
                # user_version is transactional: a crash mid-migration leaves the old number.
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _close_sync(self) -> None:
        conn = self._conn
        if conn is None:
            self._unwatch()
            self._release_lock()
            return
        try:
            if self._gone is None:
                moved = self._moved()
                if moved is not None:
                    self._mark_gone(moved)
            if self._gone is not None:
                if self._rescued is None:
                    self._rescue()
                if self._rescued is None:
                    log.error(
                        "store_lost_at_close",
                        store=str(self.path),
                        reason=self._gone,
                        error=self._rescue_error,
                    )
            else:
                try:
                    conn.execute("PRAGMA optimize")
                    # Fold the WAL back into the main file so the database is one file at rest.
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    # Nothing is lost: the committed transactions stay in the WAL, and the
                    # next open folds them in.
                    log.warning("store_checkpoint_failed", store=str(self.path), error=str(exc))
        finally:
            self._conn = None
            conn.close()
            self._unwatch()
            self._release_lock()

    # --- health --------------------------------------------------------------------------------

    async def probe(self) -> StoreHealth:
        if self._executor is None:
            return StoreHealth(False, f"store {self.path} is closed")
        try:
            return await self._submit(self._probe_sync)
        except (StoreError, RuntimeError) as exc:  # RuntimeError: closed meanwhile
            return StoreHealth(False, f"store {self.path}: {exc}")

    def _probe_sync(self) -> StoreHealth:
        conn = self._connection()
        if self._gone is None:
            moved = self._moved()
            if moved is not None:
                self._mark_gone(moved)
        if self._gone is not None:
            tried = self._rescue_tried
            if self._rescued is None and (
                tried is None or time.monotonic() - tried >= _RESCUE_RETRY_SECONDS
            ):
                self._rescue()
        elif self._failure is not None:
            # One small write: up again as soon as the disk takes it.
            try:
                with _transaction(conn):
                    conn.execute(_UPSERT_META, ("probed_at", repr(time.time())))
            except sqlite3.Error as exc:
                self._failure = _describe(exc)
            else:
                self._failure = None
        return self.health()

    def health(self) -> StoreHealth:
        """What the last write, probe or check found (no disk access)."""
        if self._gone is not None:
            if self._rescued is not None:
                saved = f"everything it held was saved to {self._rescued}"
            else:
                saved = (
                    f"saving a copy of what it holds failed ({self._rescue_error}; retried "
                    "every few seconds): keep the daemon running until it succeeds"
                )
            return StoreHealth(
                False,
                f"store {self.path}: {self._gone}; {saved}; writes are refused until a "
                "restart (see the README, what to do when the store disappears)",
                restart=True,
            )
        if self._failure is not None:
            return StoreHealth(False, f"store {self.path} cannot write: {self._failure}")
        return StoreHealth(True)

    def _mark_gone(self, reason: str) -> None:
        self._gone = reason
        self._rescue()
        self._detach_wal()

    def _detach_wal(self) -> None:
        """When the database file is no longer at the path but its write-ahead log still is,
        remove the log: SQLite would replay it into whatever file is opened at the path next
        (it never checkpoints or deletes the log of a moved file). What it holds is in the
        rescue copy, and the connection keeps reading it while the daemon runs."""
        if self._db_fd is None or self._wal_id is None:
            return
        try:
            held = os.fstat(self._db_fd)
        except OSError:
            return
        try:
            now = os.stat(self.path)
        except OSError:
            pass  # removed: the log left behind is the removed file's
        else:
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return  # the file is in place (the log or the lock went): the log is its own
        try:
            wal = os.stat(self.wal_path)
            if (wal.st_dev, wal.st_ino) == self._wal_id:
                os.unlink(self.wal_path)
                log.warning("store_wal_detached", store=str(self.path), wal=str(self.wal_path))
        except OSError:
            pass

    def _rescue(self) -> None:
        """Save what the connection holds (the removed file's content) beside the path."""
        self._rescue_tried = time.monotonic()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.rescued-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.rescued-{stamp}-{n}")
        partial = target.with_name(target.name + ".partial")
        try:
            partial.unlink(missing_ok=True)
            copy = sqlite3.connect(partial, isolation_level=None)
            try:
                self._connection().backup(copy)
                # One self-contained file, whatever journal mode the source had.
                copy.execute("PRAGMA journal_mode = DELETE")
            finally:
                copy.close()
            fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(partial, target)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            self._rescue_error = _describe(exc)
            log.error(
                "store_rescue_failed",
                store=str(self.path),
                reason=self._gone,
                error=self._rescue_error,
            )
            return
        self._rescued = target
        self._rescue_error = None
        log.warning("store_rescued", store=str(self.path), reason=self._gone, copy=str(target))

    def _refuse(self) -> None:
        """Raise while the store cannot take writes (nothing is attempted)."""
        if self._gone is not None or self._failure is not None:
            raise StoreError(self.health().reason)

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write on the worker thread: refused while down; checked after its commit."""
        self._refuse()
        result = fn(*args)
        moved = self._moved()
        if moved is not None:
            # Committed into a file that is no longer at the path: in the rescue copy, but
            # never acknowledged.
            self._mark_gone(moved)
            raise StoreError(self.health().reason)
        return result

    # --- plumbing ------------------------------------------------------------------------------

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            if _is_disk_failure(exc) and self._conn is not None and self._failure is None:
                self._failure = _describe(exc)  # down until a probe write succeeds
            raise StoreError(f"store {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            raise StoreError(f"store {self.path} is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, self._guarded, fn, *args)

    def _lock(self) -> asyncio.Lock:
        if self._order is None:
            raise StoreError(f"store {self.path} is closed")
        return self._order

    def _submit_write(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._submit(self._write, fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Reads go through the same queue as writes, so they see every write called before.
        async with self._lock():
            future = self._submit(fn, *args)
        return await future

    async def _call_write(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock():
            future = self._submit_write(fn, *args)
        return await future

    # --- tasks ---------------------------------------------------------------------------------

    async def load_tasks(self) -> list[Task]:
        return await self._call(self._load_tasks_sync)

    def _load_tasks_sync(self) -> list[Task]:
        rows = self._connection().execute(_SELECT_TASKS)
        return TaskDecoder(_STORE, texts=True).tasks(rows, _row_name)

    async def load_task(self, key: TaskKey) -> Task | None:
        return await self._call(self._load_task_sync, key)

    def _load_task_sync(self, key: TaskKey) -> Task | None:
        cursor = self._connection().execute(_SELECT_TASK, (key.sdk_app_id, key.task_id))
        found = TaskDecoder(_STORE, texts=True).tasks(cursor, _row_name)
        return found[0] if found else None

    async def save_task(self, task: Task) -> None:
        await self._call_write(self._executemany_sync, _UPSERT_TASK, [_task_row(task)])

    async def save_tasks(self, tasks: Sequence[Task]) -> None:
        async with self._lock():
            rows = await _rows(tasks, _task_row)
            future = self._submit_write(self._executemany_sync, _UPSERT_TASK, rows)
        await future

    async def save_health(self, tasks: Sequence[Task]) -> None:
        async with self._lock():
            rows = await _rows(tasks, _health_row)
            future = self._submit_write(self._executemany_sync, _UPDATE_HEALTH, rows)
        await future

    def _executemany_sync(self, sql: str, rows: list[Any]) -> None:
        conn = self._connection()
        with _transaction(conn):
            conn.executemany(sql, rows)

    async def delete_task(self, key: TaskKey) -> None:
        await self._call_write(self._delete_task_sync, key.sdk_app_id, key.task_id)

    def _delete_task_sync(self, sdk_app_id: int, task_id: str) -> None:
        conn = self._connection()
        with _transaction(conn):
            conn.execute(_DELETE_TASK_ALERTS, (sdk_app_id, task_id))
            conn.execute(_DELETE_TASK, (sdk_app_id, task_id))

    async def purge(self, before: float) -> list[TaskKey]:
        return await self._call_write(self._purge_sync, before)

    def _purge_sync(self, before: float) -> list[TaskKey]:
        conn = self._connection()
        with _transaction(conn):
            keys = [TaskKey(a, t) for a, t in conn.execute(_SELECT_PURGEABLE, (before,))]
            if keys:
                conn.execute(_DELETE_PURGEABLE_ALERTS, (before,))
                conn.execute(_DELETE_PURGEABLE, (before,))
        return keys

    # --- transitions ---------------------------------------------------------------------------

    async def record_transition(self, task: Task, transition: Transition) -> Transition:
        check_transition(task, transition)
        seq = await self._call_write(
            self._record_transition_sync, _task_row(task), _transition_row(transition)
        )
        return dataclasses.replace(transition, seq=seq)

    def _record_transition_sync(self, task_row: list[Any], transition_row: list[Any]) -> int:
        conn = self._connection()
        with _transaction(conn):
            conn.execute(_UPSERT_TASK, task_row)
            seq = conn.execute(_INSERT_TRANSITION, transition_row).lastrowid
        assert seq is not None
        return seq

    async def transitions(
        self, key: TaskKey, limit: int | None = None, newest_first: bool = True
    ) -> list[Transition]:
        sql = _SELECT_TASK_TRANSITIONS_NEWEST if newest_first else _SELECT_TASK_TRANSITIONS_OLDEST
        args = (key.sdk_app_id, key.task_id, -1 if limit is None else max(limit, 0))
        return await self._call(self._select_transitions_sync, sql, args)

    async def recent_transitions(self, limit: int) -> list[Transition]:
        return await self._call(
            self._select_transitions_sync, _SELECT_RECENT_TRANSITIONS, (max(limit, 0),)
        )

    def _select_transitions_sync(self, sql: str, args: tuple[Any, ...]) -> list[Transition]:
        rows = self._connection().execute(sql, args)
        return [t for t in map(_transition_from_row, rows) if t is not None]

    # --- alerts --------------------------------------------------------------------------------

    async def save_alert(self, record: AlertRecord) -> None:
        await self._call_write(self._executemany_sync, _UPSERT_ALERT, [_alert_row(record)])

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        async with self._lock():
            rows = await _rows(records, _alert_row)
            future = self._submit_write(self._executemany_sync, _UPSERT_ALERT, rows)
        await future

    async def load_alerts(self) -> list[AlertRecord]:
        return await self._call(self._load_alerts_sync)

    def _load_alerts_sync(self) -> list[AlertRecord]:
        rows = self._connection().execute(_SELECT_ALERTS)
        return [r for r in map(_alert_from_row, rows) if r is not None]

    async def delete_alert(self, fingerprint: str) -> None:
        await self._call_write(self._executemany_sync, _DELETE_ALERT, [(fingerprint,)])

    # --- meta ----------------------------------------------------------------------------------

    async def meta_get(self, key: str) -> str | None:
        return await self._call(self._meta_get_sync, key)

    def _meta_get_sync(self, key: str) -> str | None:
        row = self._connection().execute(_SELECT_META, (key,)).fetchone()
        return None if row is None else str(row[0])

    async def meta_set(self, key: str, value: str) -> None:
        await self._call_write(self._executemany_sync, _UPSERT_META, [(key, value)])


def _is_disk_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DISK_FAILURES


def _describe(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{exc} ({name})" if name else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _statements(script: str) -> Iterator[str]:
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
