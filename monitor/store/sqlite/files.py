"""What a SQLite store holds on disk besides its connection: the lock file that keeps a second
monitor away, the identity (device, inode) of the database file and its write-ahead log, to
notice when either is removed or replaced under the running daemon, and the rescue copy of
what the connection still holds when that happens.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

from monitor.log import get_logger
from monitor.store.base import StoreError

__all__ = ["FileGuard", "describe", "is_disk_failure"]

log = get_logger("monitor.store.sqlite")


# Primary SQLite result codes that say the disk cannot take (or give back) the data now:
# SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN,
# SQLITE_NOTADB. Any of them marks the store down until a probe write succeeds.
_DISK_FAILURES: Final = frozenset({3, 8, 10, 11, 13, 14, 26})


def is_disk_failure(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DISK_FAILURES


def describe(exc: BaseException) -> str:
    """An error as the store's health and log name it."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{exc} ({name})" if name else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class FileGuard:
    """The lock, the watched identities and the rescue copy of the store at ``path``.

    Touched only on the store's worker thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        # The database file the connection holds (kept open to compare it with the path) and
        # the write-ahead log's (device, inode) when the store opened.
        self._db_fd: int | None = None
        self._wal_id: tuple[int, int] | None = None
        # Where the last rescue copy went, or why it failed, and when it was last tried.
        self.rescued: Path | None = None
        self.rescue_error: str | None = None
        self.rescue_tried: float | None = None

    def saved(self) -> str:
        """Where what the store held was saved, or why that failed, for its health."""
        if self.rescued is not None:
            return f"everything it held was saved to {self.rescued}"
        return (
            f"saving a copy of what it holds failed ({self.rescue_error}; retried "
            "every few seconds): keep the daemon running until it succeeds"
        )

    @property
    def wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def watch(self, conn: sqlite3.Connection) -> None:
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
        if self.moved() is not None:
            raise StoreError(f"store {self.path} was replaced while it was being opened")

    def unwatch(self) -> None:
        # Only after the connection is closed: closing any descriptor of a file drops the
        # POSIX locks the process holds on it, SQLite's included.
        fd, self._db_fd = self._db_fd, None
        self._wal_id = None
        if fd is not None:
            os.close(fd)

    def moved(self) -> str | None:
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

    def take_lock(self) -> None:
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

    def release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock

    def detach_wal(self) -> None:
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

    def rescue(self, conn: sqlite3.Connection, reason: str | None) -> None:
        """Save what the connection holds (the removed file's content) beside the path."""
        self.rescue_tried = time.monotonic()
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
                conn.backup(copy)
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
            self.rescue_error = describe(exc)
            log.error(
                "store_rescue_failed",
                store=str(self.path),
                reason=reason,
                error=self.rescue_error,
            )
            return
        self.rescued = target
        self.rescue_error = None
        log.warning("store_rescued", store=str(self.path), reason=reason, copy=str(target))
