"""The store contract for opening, closing and concurrent calls (both backends)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import pytest

from monitor.models import Status
from monitor.store import SCHEMA_VERSION, SqliteStore, Store, StoreError
from tests.store.helpers import (
    Backend,
    make_task,
    move,
    reopened,
)


class TestLifecycle:
    async def test_opening_creates_missing_directories_and_a_versioned_wal_database(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "a" / "b" / "monitor.db"
        async with SqliteStore(path) as store:
            await store.save_task(make_task())
            side = sqlite3.connect(path)
            try:
                assert side.execute("PRAGMA journal_mode").fetchone() == ("wal",)
                assert side.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            finally:
                side.close()

    async def test_closing_and_opening_the_same_object_again_sees_everything(
        self, store: Store, backend: Backend
    ) -> None:
        task = make_task()
        recorded = await store.record_transition(task, move(task, Status.IDLE, 1.0))
        await store.close()
        if backend.name == "sqlite":
            # Closing folds the WAL back: the database is one file at rest.
            wal = Path(backend.location + "-wal")
            assert not wal.exists() or wal.stat().st_size == 0

        await store.open()  # the same object opens again
        assert await store.load_tasks() == [task]
        assert await store.transitions(task.key) == [recorded]

    async def test_calls_after_close_raise_store_error_and_closing_twice_is_harmless(
        self, store: Store, backend: Backend
    ) -> None:
        await store.close()
        await store.close()
        with pytest.raises(StoreError, match=re.escape(backend.location)):
            await store.load_tasks()
        with pytest.raises(StoreError, match="closed"):
            await store.save_tasks([make_task()])

    async def test_opening_an_open_store_is_refused(self, store: Store) -> None:
        with pytest.raises(StoreError, match="already open"):
            await store.open()

    async def test_writes_called_before_close_are_on_disk_after_it(
        self, store: Store, backend: Backend
    ) -> None:
        tasks = [make_task(f"t-{i}") for i in range(2000)]
        pending = asyncio.ensure_future(store.save_tasks(tasks))
        await asyncio.sleep(0)  # the batch has started taking its rows
        await store.close()
        await pending
        again = await reopened(backend)
        try:
            assert len(await again.load_tasks()) == 2000
        finally:
            await again.close()

    async def test_a_file_that_is_not_sqlite_is_refused_with_its_path(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.db"
        path.write_bytes(b"these are not the pages you are looking for\n" * 200)
        store = SqliteStore(path)
        with pytest.raises(StoreError, match="not a SQLite database") as caught:
            await store.open()
        assert str(path) in str(caught.value)
        with pytest.raises(StoreError, match="closed"):
            await store.load_tasks()

    async def test_a_newer_schema_is_refused_with_its_path(self, db_path: Path) -> None:
        async with SqliteStore(db_path) as store:
            await store.save_task(make_task())
        side = sqlite3.connect(db_path)
        side.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        side.close()
        with pytest.raises(StoreError, match="newer") as caught:
            await SqliteStore(db_path).open()
        assert str(db_path) in str(caught.value)

    async def test_a_database_of_another_application_is_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        side = sqlite3.connect(path)
        side.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        side.commit()
        side.close()
        with pytest.raises(StoreError, match="something else"):
            await SqliteStore(path).open()
        side = sqlite3.connect(path)
        try:
            names = [r[0] for r in side.execute("SELECT name FROM sqlite_master")]
        finally:
            side.close()
        assert names == ["invoices"]

    async def test_a_path_that_cannot_be_a_file_is_refused_with_its_path(
        self, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StoreError, match="directory"):
            await SqliteStore(blocker / "monitor.db").open()

    def test_sqlite_store_satisfies_the_store_protocol(self, db_path: Path) -> None:
        store: Store = SqliteStore(db_path)  # checked by mypy; the repr names the file
        assert str(db_path) in repr(store)


class TestConcurrency:
    async def test_the_event_loop_keeps_running_during_a_large_batch_write(
        self, store: Store
    ) -> None:
        tasks = [
            make_task(f"t-{i:05d}", labels={"room": f"r-{i}"}, answer_status=Status.IDLE)
            for i in range(50_000)
        ]
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)
                ticks.append(time.monotonic())

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await store.save_tasks(tasks)
        finished = time.monotonic()
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking

        during = [t for t in ticks if started <= t <= finished]
        gaps = [b - a for a, b in zip([started, *during], [*during, finished], strict=True)]
        # A write that held the loop would show as one gap spanning the whole write.
        assert len(during) >= 5
        assert max(gaps) < (finished - started) / 2
        assert len(await store.load_tasks()) == 50_000

    async def test_a_transition_recorded_during_a_batch_is_not_overwritten_by_it(
        self, store: Store
    ) -> None:
        tasks = [make_task(f"t-{i:05d}", Status.IN_PROGRESS) for i in range(5000)]
        first = tasks[0]
        batch = asyncio.ensure_future(store.save_tasks(tasks))
        await asyncio.sleep(0)  # the batch has copied its first chunk, first task included
        transition = move(first, Status.EXITED, 2000.0)
        recorded = await store.record_transition(first, transition)
        await batch

        loaded = {t.key: t for t in await store.load_tasks()}
        assert loaded[first.key].status is Status.EXITED
        assert await store.transitions(first.key) == [recorded]
