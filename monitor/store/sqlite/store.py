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
last commits, which is the durability the store promises.

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
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from monitor.log import get_logger
from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord, OpenedByWith, StoreError, StoreHealth
from monitor.store.codec import TaskDecoder, check_transition
from monitor.store.sqlite import rows as sql
from monitor.store.sqlite.files import FileGuard, describe, is_disk_failure
from monitor.store.sqlite.schema import (
    BUSY_TIMEOUT_MS,
    SELECT_META,
    UPSERT_META,
    prepare,
    transaction,
)

T = TypeVar("T")

log = get_logger("monitor.store.sqlite")

# A rescue copy that could not be written is tried again this often (seconds).
_RESCUE_RETRY_SECONDS: Final = 10.0


# --- the store ---------------------------------------------------------------------------------


class SqliteStore(OpenedByWith):
    """The embedded store. See the module docstring for its threading model."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._order: asyncio.Lock | None = None
        # Touched only on the worker thread.
        self._conn: sqlite3.Connection | None = None
        self._files = FileGuard(self.path)
        # Why writes fail now (recoverable), or why the file is gone (for good).
        self._failure: str | None = None
        self._gone: str | None = None

    def __repr__(self) -> str:
        state = "open" if self._executor is not None else "closed"
        return f"SqliteStore({str(self.path)!r}, {state})"

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
        self._files.take_lock()
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                prepare(conn, self.path)
                self._files.watch(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._files.unwatch()
            self._files.release_lock()
            raise
        self._conn = conn
        self._failure = self._gone = self._files.rescue_error = None
        self._files.rescued = self._files.rescue_tried = None

    @property
    def wal_path(self) -> Path:
        return self._files.wal_path

    @property
    def lock_path(self) -> Path:
        return self._files.lock_path

    def _close_sync(self) -> None:
        conn = self._conn
        if conn is None:
            self._files.unwatch()
            self._files.release_lock()
            return
        try:
            if self._gone is None:
                moved = self._files.moved()
                if moved is not None:
                    self._mark_gone(moved)
            if self._gone is not None:
                if self._files.rescued is None:
                    self._files.rescue(self._connection(), self._gone)
                if self._files.rescued is None:
                    log.error(
                        "store_lost_at_close",
                        store=str(self.path),
                        reason=self._gone,
                        error=self._files.rescue_error,
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
            self._files.unwatch()
            self._files.release_lock()

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
            moved = self._files.moved()
            if moved is not None:
                self._mark_gone(moved)
        if self._gone is not None:
            tried = self._files.rescue_tried
            if self._files.rescued is None and (
                tried is None or time.monotonic() - tried >= _RESCUE_RETRY_SECONDS
            ):
                self._files.rescue(self._connection(), self._gone)
        elif self._failure is not None:
            # One small write: up again as soon as the disk takes it.
            try:
                with transaction(conn):
                    conn.execute(UPSERT_META, ("probed_at", repr(time.time())))
            except sqlite3.Error as exc:
                self._failure = describe(exc)
            else:
                self._failure = None
        return self.health()

    def health(self) -> StoreHealth:
        """What the last write, probe or check found (no disk access)."""
        if self._gone is not None:
            return StoreHealth(
                False,
                f"store {self.path}: {self._gone}; {self._files.saved()}; writes are refused "
                "until a restart (see the README, what to do when the store disappears)",
                restart=True,
            )
        if self._failure is not None:
            return StoreHealth(False, f"store {self.path} cannot write: {self._failure}")
        return StoreHealth(True)

    def _mark_gone(self, reason: str) -> None:
        self._gone = reason
        self._files.rescue(self._connection(), self._gone)
        self._files.detach_wal()

    def _refuse(self) -> None:
        """Raise while the store cannot take writes (nothing is attempted)."""
        if self._gone is not None or self._failure is not None:
            raise StoreError(self.health().reason)

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write on the worker thread: refused while down; checked after its commit."""
        self._refuse()
        result = fn(*args)
        moved = self._files.moved()
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
            if is_disk_failure(exc) and self._conn is not None and self._failure is None:
                self._failure = describe(exc)  # down until a probe write succeeds
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
        rows = self._connection().execute(sql.SELECT_TASKS)
        return TaskDecoder(sql.STORE, texts=True).tasks(rows, sql.row_name)

    async def load_task(self, key: TaskKey) -> Task | None:
        return await self._call(self._load_task_sync, key)

    def _load_task_sync(self, key: TaskKey) -> Task | None:
        cursor = self._connection().execute(sql.SELECT_TASK, (key.sdk_app_id, key.task_id))
        found = TaskDecoder(sql.STORE, texts=True).tasks(cursor, sql.row_name)
        return found[0] if found else None

    async def save_task(self, task: Task) -> None:
        await self._call_write(self._executemany_sync, sql.UPSERT_TASK, [sql.task_row(task)])

    async def save_tasks(self, tasks: Sequence[Task]) -> None:
        await self._save(sql.UPSERT_TASK, tasks, sql.task_row)

    async def save_health(self, tasks: Sequence[Task]) -> None:
        await self._save(sql.UPDATE_HEALTH, tasks, sql.health_row)

    async def _save(
        self, statement: str, items: Sequence[T], convert: Callable[[T], Sequence[Any]]
    ) -> None:
        """One transaction writing many records: rows taken while the call waits its turn."""
        async with self._lock():
            rows = await sql.converted(items, convert)
            future = self._submit_write(self._executemany_sync, statement, rows)
        await future

    def _executemany_sync(self, statement: str, rows: list[Any]) -> None:
        conn = self._connection()
        with transaction(conn):
            conn.executemany(statement, rows)

    async def delete_task(self, key: TaskKey) -> None:
        await self._call_write(self._delete_task_sync, key.sdk_app_id, key.task_id)

    def _delete_task_sync(self, sdk_app_id: int, task_id: str) -> None:
        conn = self._connection()
        with transaction(conn):
            conn.execute(sql.DELETE_TASK_ALERTS, (sdk_app_id, task_id))
            conn.execute(sql.DELETE_TASK, (sdk_app_id, task_id))

    async def purge(self, before: float) -> list[TaskKey]:
        return await self._call_write(self._purge_sync, before)

    def _purge_sync(self, before: float) -> list[TaskKey]:
        conn = self._connection()
        with transaction(conn):
            keys = [TaskKey(a, t) for a, t in conn.execute(sql.SELECT_PURGEABLE, (before,))]
            if keys:
                conn.execute(sql.DELETE_PURGEABLE_ALERTS, (before,))
                conn.execute(sql.DELETE_PURGEABLE, (before,))
        return keys

    # --- transitions ---------------------------------------------------------------------------

    async def record_transition(self, task: Task, transition: Transition) -> Transition:
        check_transition(task, transition)
        seq = await self._call_write(
            self._record_transition_sync, sql.task_row(task), sql.transition_row(transition)
        )
        return dataclasses.replace(transition, seq=seq)

    def _record_transition_sync(self, task_row: list[Any], transition_row: list[Any]) -> int:
        conn = self._connection()
        with transaction(conn):
            conn.execute(sql.UPSERT_TASK, task_row)
            seq = conn.execute(sql.INSERT_TRANSITION, transition_row).lastrowid
        assert seq is not None
        return seq

    async def transitions(
        self, key: TaskKey, limit: int | None = None, newest_first: bool = True
    ) -> list[Transition]:
        statement = (
            sql.SELECT_TASK_TRANSITIONS_NEWEST
            if newest_first
            else sql.SELECT_TASK_TRANSITIONS_OLDEST
        )
        args = (key.sdk_app_id, key.task_id, -1 if limit is None else max(limit, 0))
        return await self._call(self._select_transitions_sync, statement, args)

    async def recent_transitions(self, limit: int) -> list[Transition]:
        return await self._call(
            self._select_transitions_sync, sql.SELECT_RECENT_TRANSITIONS, (max(limit, 0),)
        )

    def _select_transitions_sync(self, statement: str, args: tuple[Any, ...]) -> list[Transition]:
        rows = self._connection().execute(statement, args)
        return [t for t in map(sql.transition_from_row, rows) if t is not None]

    # --- alerts --------------------------------------------------------------------------------

    async def save_alert(self, record: AlertRecord) -> None:
        await self._call_write(self._executemany_sync, sql.UPSERT_ALERT, [sql.alert_row(record)])

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        await self._save(sql.UPSERT_ALERT, records, sql.alert_row)

    async def load_alerts(self) -> list[AlertRecord]:
        return await self._call(self._load_alerts_sync)

    def _load_alerts_sync(self) -> list[AlertRecord]:
        rows = self._connection().execute(sql.SELECT_ALERTS)
        return [r for r in map(sql.alert_from_row, rows) if r is not None]

    async def delete_alert(self, fingerprint: str) -> None:
        await self._call_write(self._executemany_sync, sql.DELETE_ALERT, [(fingerprint,)])

    # --- meta ----------------------------------------------------------------------------------

    async def meta_get(self, key: str) -> str | None:
        return await self._call(self._meta_get_sync, key)

    def _meta_get_sync(self, key: str) -> str | None:
        row = self._connection().execute(SELECT_META, (key,)).fetchone()
        return None if row is None else str(row[0])

    async def meta_set(self, key: str, value: str) -> None:
        await self._call_write(self._executemany_sync, UPSERT_META, [(key, value)])
