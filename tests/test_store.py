"""The store contract, run against both backends: SQLite files and a real ``redis-server``.

Every behaviour test takes the ``backend`` fixture, so the two backends are held to the same
contract; tests of what only one backend has (SQLite files, locking, migrations) say so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import sqlite3
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.models import Source, Status, Task, TaskKey, Transition, storage_file_summary
from monitor.store import SCHEMA_VERSION, AlertRecord, SqliteStore, Store, StoreError
from monitor.store.redis import REDIS_SCHEMA_VERSION, RedisStore
from monitor.uploads import NO_UPLOAD, FileKind, UploadEvent, UploadFile, apply_upload_event
from tests.redis_server import RedisServer

APP = 1400000001


def make_task(
    task_id: str = "t-1",
    status: Status = Status.PENDING,
    at: float = 1000.0,
    sdk_app_id: int = APP,
    **fields: Any,
) -> Task:
    return Task(
        sdk_app_id=sdk_app_id,
        task_id=task_id,
        region="ap-guangzhou",
        account="default",
        registered_at=at,
        status=status,
        status_since=at,
        **fields,
    )


def move(
    task: Task,
    to: Status,
    at: float,
    source: Source = Source.POLL,
    request_id: str | None = None,
    **detail: Any,
) -> Transition:
    """What the tracker does: change the task's status and describe the change."""
    transition = Transition(
        sdk_app_id=task.sdk_app_id,
        task_id=task.task_id,
        from_status=task.status,
        to_status=to,
        at=at,
        source=source,
        request_id=request_id,
        detail=dict(detail),
    )
    task.status = to
    task.status_since = at
    task.ended_at = at if task.final else None
    return transition


def full_task() -> Task:
    """A task whose every field differs from its default, with unicode and nested JSON."""
    return Task(
        sdk_app_id=APP,
        task_id="任务-42 ✓",
        region="ap-singapore",
        account="账号-b",
        labels={"room": "房间-42", "customer": "acme", "empty": "", "emoji": "🎥"},
        interval=7.5,
        registered_at=1_700_000_000.125,
        source=Source.CALLBACK,
        status=Status.ENDED,
        status_since=1_700_000_100.5,
        consecutive_errors=2,
        last_error_code="InternalError",
        last_error_at=1_700_000_090.0,
        last_success_at=1_700_000_080.0,
        last_request_id="6b0b1c4e-请求",
        storage_files=1,
        answer_status=Status.EXITED,
        answer_request_id="6b0b1c4e-请求",
        answer_files=storage_file_summary(
            [{"FileName": "a.m3u8", "TrackType": "audio_video", "UserId": "用户"}]
        )[1],
        extra={"leave_code": 2, "files": ["x.mp4"], "vod": {"FileId": "5285890781763144364"}},
        ended_at=1_700_000_100.5,
        observed_at=1_700_000_100.25,
        upload=apply_upload_event(
            NO_UPLOAD,
            UploadEvent(
                308,
                code="InvalidParameter",
                message="密钥 invalid",
                files=(UploadFile(FileKind.COS, "文件.m3u8", begin_ms=1),),
                at=1_700_000_050.25,
            ),
            1_700_000_051.0,
        ).state,
    )


def alert(
    fingerprint: str, task: TaskKey | None = None, state: str = "firing", **fields: Any
) -> AlertRecord:
    return AlertRecord(
        fingerprint=fingerprint,
        alertname="RecordingTaskExited" if task else "RecordingMonitorThrottled",
        labels={"alertname": "RecordingTaskExited", "severity": "critical", "room": "房间"},
        annotations={"summary": "task exited", "description": "InProgress -> Exited"},
        state="firing" if state == "firing" else "resolved",
        starts_at=1000.0,
        task=task,
        **fields,
    )


KEY_PREFIX = "test-store:"


@dataclass(frozen=True)
class Backend:
    """One backend under test: ``make`` builds a new, closed store over the same data."""

    name: str
    make: Callable[[], Store]
    location: str  # what the store's error messages name
    schema_version: str
    # The argument the crash-test writer takes to build the same store.
    target: str


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "monitor.db"


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend(
            "sqlite",
            lambda: SqliteStore(db_path),
            str(db_path),
            str(SCHEMA_VERSION),
            f"sqlite:{db_path}",
        )
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield Backend(
        "redis",
        lambda: RedisStore(server.url, KEY_PREFIX),
        f"127.0.0.1:{server.port}/0",
        str(REDIS_SCHEMA_VERSION),
        server.url,
    )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    yield s
    await s.close()


RedisSync = Callable[[Backend], redis.Redis]


@pytest.fixture
def redis_sync() -> Iterator[RedisSync]:
    """A plain client beside the store, for tests that tamper with what Redis holds."""
    clients: list[redis.Redis] = []

    def connect(backend: Backend) -> redis.Redis:
        assert backend.name == "redis"
        client = redis.Redis.from_url(backend.target)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


async def reopened(backend: Backend) -> Store:
    s = backend.make()
    await s.open()
    return s


class TestTasks:
    async def test_every_field_survives_a_reopen_unchanged(
        self, store: Store, backend: Backend
    ) -> None:
        task = full_task()
        for f in dataclasses.fields(Task):
            if not f.compare:
                continue  # a cache (the key), not part of the record
            default = f.default_factory() if callable(f.default_factory) else f.default
            assert getattr(task, f.name) != default, f"full_task leaves {f.name} at its default"
        await store.save_task(task)
        await store.close()

        again = await reopened(backend)
        try:
            (loaded,) = await again.load_tasks()
        finally:
            await again.close()
        assert loaded == task
        assert type(loaded.status) is Status
        assert type(loaded.source) is Source

    async def test_none_and_empty_values_come_back_as_none_and_empty(self, store: Store) -> None:
        task = make_task()
        await store.save_task(task)
        (loaded,) = await store.load_tasks()
        assert loaded == task
        assert loaded.last_response is None
        assert loaded.answer_status is None
        assert loaded.interval is None
        assert loaded.labels == {}

    async def test_saving_a_known_task_replaces_every_field(self, store: Store) -> None:
        await store.save_task(make_task(labels={"room": "a"}, interval=5.0))
        changed = full_task()
        changed.task_id = "t-1"
        await store.save_task(changed)
        assert await store.load_tasks() == [changed]

    async def test_a_batch_is_saved_and_loaded_back_in_key_order(self, store: Store) -> None:
        tasks = [
            make_task(f"t-{i:03d}", sdk_app_id=APP + i % 3, labels={"i": str(i)})
            for i in range(300)
        ]
        await store.save_tasks(list(reversed(tasks)))
        loaded = await store.load_tasks()
        assert loaded == sorted(tasks, key=lambda t: t.key)

    async def test_one_task_loads_as_stored_with_its_health_and_status(self, store: Store) -> None:
        other = make_task("t-2")
        task = full_task()
        await store.save_tasks([task, other])
        assert await store.load_task(task.key) == task
        assert await store.load_task(TaskKey(APP, "unknown")) is None

        seen = dataclasses.replace(other, last_success_at=2000.0, consecutive_errors=0)
        await store.save_health([seen])
        moved = dataclasses.replace(seen)
        stored = await store.record_transition(moved, move(moved, Status.IN_PROGRESS, 2001.0))
        loaded = await store.load_task(other.key)
        assert loaded == moved
        assert loaded is not None
        assert loaded.status is Status.IN_PROGRESS
        assert stored.seq is not None

        await store.delete_task(other.key)
        assert await store.load_task(other.key) is None

    async def test_an_empty_batch_is_a_no_op(self, store: Store) -> None:
        await store.save_tasks([])
        await store.save_health([])
        assert await store.load_tasks() == []

    async def test_health_flush_writes_only_health_and_never_resurrects_a_task(
        self, store: Store
    ) -> None:
        stored = make_task("t-1", Status.IN_PROGRESS, labels={"room": "a"})
        await store.save_task(stored)
        unknown = make_task("never-saved")

        stored.consecutive_errors = 4
        stored.last_error_code = "InternalError"
        stored.last_error_at = 1010.0
        stored.last_success_at = 1005.0
        stored.last_request_id = "req-9"
        stored.storage_files = 2
        stored.answer_status = Status.IN_PROGRESS
        stored.answer_request_id = "req-9"
        # Not health: a flush must leave these as stored.
        stored.status = Status.EXITED
        stored.labels = {"room": "b"}
        stored.extra = {"leave_code": 1}
        await store.save_health([stored, unknown])

        (loaded,) = await store.load_tasks()
        assert (
            loaded.consecutive_errors,
            loaded.last_error_code,
            loaded.last_error_at,
            loaded.last_success_at,
            loaded.last_request_id,
            loaded.storage_files,
            loaded.last_response,
        ) == (
            4,
            "InternalError",
            1010.0,
            1005.0,
            "req-9",
            2,
            {"Status": "InProgress", "StorageFileList": None, "RequestId": "req-9"},
        )
        assert (loaded.status, loaded.labels, loaded.extra) == (
            Status.IN_PROGRESS,
            {"room": "a"},
            {},
        )

    async def test_the_task_as_it_was_at_the_call_is_written(self, store: Store) -> None:
        task = make_task(labels={"room": "a"})
        pending = asyncio.ensure_future(store.save_task(task))
        await asyncio.sleep(0)  # the save has started; its write may still be queued
        task.labels["room"] = "changed after the call"
        task.status = Status.IDLE
        await pending
        (loaded,) = await store.load_tasks()
        assert (loaded.labels, loaded.status) == ({"room": "a"}, Status.PENDING)

    async def test_lone_surrogates_from_parsed_callbacks_survive_in_json_fields(
        self, store: Store
    ) -> None:
        task = make_task(labels={"room": "\ud800"}, extra={"x\udfff": ["\udc00"]})
        await store.save_task(task)
        assert await store.load_tasks() == [task]

    async def test_delete_task_removes_its_transitions_and_alerts_and_nothing_else(
        self, store: Store
    ) -> None:
        gone, kept = make_task("gone"), make_task("kept")
        await store.save_tasks([gone, kept])
        await store.record_transition(gone, move(gone, Status.IDLE, 1001.0))
        await store.record_transition(kept, move(kept, Status.IDLE, 1002.0))
        await store.save_alerts(
            [alert("a-gone", gone.key), alert("a-kept", kept.key), alert("a-monitor")]
        )

        await store.delete_task(gone.key)
        await store.delete_task(TaskKey(APP, "unknown"))

        assert [t.key for t in await store.load_tasks()] == [kept.key]
        assert await store.transitions(gone.key) == []
        assert [t.task_id for t in await store.recent_transitions(10)] == ["kept"]
        assert [a.fingerprint for a in await store.load_alerts()] == ["a-kept", "a-monitor"]

    async def test_a_hundred_thousand_tasks_load_back_complete(self, store: Store) -> None:
        tasks = [
            make_task(
                f"task-{i:06d}",
                Status.IN_PROGRESS,
                labels={"room": f"r-{i}"},
                answer_status=Status.IN_PROGRESS,
                answer_files="[]",
            )
            for i in range(100_000)
        ]
        await store.save_tasks(tasks)
        loaded = await store.load_tasks()
        assert len(loaded) == 100_000
        assert loaded[0] == tasks[0]
        assert loaded[-1] == tasks[-1]
        assert loaded[54_321].labels == {"room": "r-54321"}

    def test_any_labels_extra_and_task_id_round_trip(self, backend: Backend) -> None:
        # One store for every example: opening one per example would dominate the run time.
        loop = asyncio.new_event_loop()
        store = backend.make()
        loop.run_until_complete(store.open())
        json_values = st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
            ),
            max_leaves=12,
        )
        plain_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)

        @settings(max_examples=60, deadline=None)
        @given(
            task_id=plain_text,
            labels=st.dictionaries(st.text(), st.text(), max_size=5),
            extra=st.dictionaries(st.text(), json_values, max_size=4),
        )
        def check(task_id: str, labels: dict[str, str], extra: dict[str, Any]) -> None:
            task = make_task(task_id, labels=labels, extra=extra)
            loop.run_until_complete(store.save_task(task))
            try:
                assert loop.run_until_complete(store.load_tasks()) == [task]
            finally:
                loop.run_until_complete(store.delete_task(task.key))

        try:
            check()
        finally:
            loop.run_until_complete(store.close())
            loop.close()


class TestTransitions:
    async def test_recording_assigns_increasing_seq_and_keeps_task_and_history_together(
        self, store: Store, backend: Backend
    ) -> None:
        task = make_task()
        await store.save_task(task)
        first = await store.record_transition(
            task, move(task, Status.IDLE, 1001.0, request_id="r1")
        )
        second = await store.record_transition(
            task, move(task, Status.EXITED, 1002.0, Source.CALLBACK, leave_code=2)
        )
        assert first.seq is not None
        assert second.seq is not None
        assert second.seq > first.seq
        await store.close()

        again = await reopened(backend)
        try:
            (loaded,) = await again.load_tasks()
            history = await again.transitions(task.key, newest_first=False)
        finally:
            await again.close()
        assert (loaded.status, loaded.status_since) == (Status.EXITED, 1002.0)
        assert history == [first, second]
        assert history[1].detail == {"leave_code": 2}
        assert history[1].source is Source.CALLBACK
        assert history[0].request_id == "r1"

    async def test_recording_registers_a_task_the_store_did_not_know(self, store: Store) -> None:
        task = make_task()
        recorded = await store.record_transition(task, move(task, Status.IN_PROGRESS, 1001.0))
        assert await store.load_tasks() == [task]
        assert await store.transitions(task.key) == [recorded]

    async def test_a_failed_write_leaves_neither_the_transition_nor_the_new_state(
        self, store: Store, backend: Backend, redis_sync: RedisSync
    ) -> None:
        task = make_task(status=Status.IN_PROGRESS)
        await store.save_task(task)
        if backend.name == "sqlite":
            # A trigger makes the transition insert fail after the task row was already
            # updated within the same transaction.
            side = sqlite3.connect(backend.location)
            side.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON transitions WHEN NEW.request_id = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
            side.commit()
            side.close()
            refusal = "refused"
        else:
            # A key of the wrong type where the task's history goes: the last write of the
            # step would fail, after the task's state was written, were the step not atomic.
            history = f"{KEY_PREFIX}task-transitions:{task.sdk_app_id}:{task.task_id}"
            redis_sync(backend).set(history, "not a list")
            refusal = "holds a string"

        with pytest.raises(StoreError, match=refusal):
            await store.record_transition(
                task, move(task, Status.EXITED, 1005.0, request_id="boom")
            )
        if backend.name == "redis":
            redis_sync(backend).delete(history)

        (loaded,) = await store.load_tasks()
        assert (loaded.status, loaded.status_since) == (Status.IN_PROGRESS, 1000.0)
        assert await store.transitions(task.key) == []
        # The store is still usable after the failure.
        recorded = await store.record_transition(task, move(task, Status.ENDED, 1006.0))
        assert await store.transitions(task.key) == [recorded]

    async def test_history_is_ordered_by_seq_either_way_and_limited(self, store: Store) -> None:
        task, other = make_task("t-1"), make_task("t-2")
        recorded = []
        for i, to in enumerate([Status.IDLE, Status.IN_PROGRESS, Status.EXITED, Status.ENDED]):
            recorded.append(await store.record_transition(task, move(task, to, 1001.0 + i)))
            await store.record_transition(
                other, move(other, Status.IDLE if i % 2 == 0 else Status.IN_PROGRESS, 1001.0 + i)
            )

        assert await store.transitions(task.key) == recorded[::-1]
        assert await store.transitions(task.key, newest_first=False) == recorded
        assert await store.transitions(task.key, limit=2) == recorded[:1:-1]
        assert await store.transitions(task.key, limit=2, newest_first=False) == recorded[:2]
        assert await store.transitions(task.key, limit=0) == []
        assert await store.transitions(TaskKey(APP, "unknown")) == []

    async def test_recent_transitions_span_the_fleet_newest_first(self, store: Store) -> None:
        seqs = []
        for i in range(5):
            task = make_task(f"t-{i}")
            seqs.append((await store.record_transition(task, move(task, Status.IDLE, 1.0))).seq)
        recent = await store.recent_transitions(3)
        assert [t.seq for t in recent] == seqs[:1:-1]
        assert [t.task_id for t in recent] == ["t-4", "t-3", "t-2"]

    async def test_a_seq_is_never_handed_out_twice_even_after_deletions(self, store: Store) -> None:
        task = make_task("first")
        old = await store.record_transition(task, move(task, Status.IDLE, 1.0))
        await store.delete_task(task.key)
        task = make_task("second")
        new = await store.record_transition(task, move(task, Status.IDLE, 2.0))
        assert old.seq is not None
        assert new.seq is not None
        assert new.seq > old.seq

    async def test_a_transition_that_does_not_match_its_task_is_refused(self, store: Store) -> None:
        task = make_task()
        transition = move(task, Status.IDLE, 1.0)
        with pytest.raises(ValueError, match="status"):
            await store.record_transition(make_task(status=Status.IN_PROGRESS), transition)
        with pytest.raises(ValueError, match="t-other"):
            await store.record_transition(make_task("t-other", Status.IDLE), transition)
        recorded = await store.record_transition(task, transition)
        with pytest.raises(ValueError, match="already recorded"):
            await store.record_transition(task, recorded)
        assert await store.transitions(task.key) == [recorded]


class TestPurge:
    async def test_purge_removes_only_final_tasks_that_ended_before_the_cutoff(
        self, store: Store
    ) -> None:
        cutoff = 5000.0
        doomed: list[Task] = []
        for task_id, to in [("ended", Status.ENDED), ("expired", Status.EXPIRED)]:
            task = make_task(task_id, Status.IN_PROGRESS)
            await store.record_transition(task, move(task, to, 4000.0))
            doomed.append(task)
        removed = make_task("removed", Status.IDLE)
        await store.record_transition(removed, move(removed, Status.REMOVED, 4999.9, Source.API))
        doomed.append(removed)

        recent = make_task("ended-recently", Status.IN_PROGRESS)
        await store.record_transition(recent, move(recent, Status.ENDED, 5000.0))
        running = make_task("running", Status.IN_PROGRESS)
        exited = make_task("exited-long-ago", Status.IN_PROGRESS)
        await store.record_transition(exited, move(exited, Status.EXITED, 10.0))
        # Ended long ago, then registered again: live, whatever ended_at still says.
        again = make_task("registered-again", Status.IDLE, ended_at=10.0)
        await store.save_tasks([running, again])
        kept = [recent, running, exited, again]

        await store.save_alerts(
            [alert(f"a-{t.task_id}", t.key) for t in doomed + kept] + [alert("a-monitor")]
        )

        purged = await store.purge(cutoff)

        assert purged == sorted(t.key for t in doomed)
        assert sorted(t.key for t in await store.load_tasks()) == sorted(t.key for t in kept)
        for task in doomed:
            assert await store.transitions(task.key) == []
        assert len(await store.transitions(recent.key)) == 1
        assert len(await store.transitions(exited.key)) == 1
        assert sorted(a.fingerprint for a in await store.load_alerts()) == sorted(
            [f"a-{t.task_id}" for t in kept] + ["a-monitor"]
        )
        assert await store.purge(cutoff) == []


class TestAlerts:
    async def test_alert_records_round_trip_through_a_reopen(
        self, store: Store, backend: Backend
    ) -> None:
        firing = alert("fp-1", TaskKey(APP, "任务"), last_sent_at={"am": 1010.5, "hook": 1011.0})
        resolved = alert(
            "fp-2",
            state="resolved",
            ends_at=1100.0,
            last_sent_at={"am": 1100.0},
            resolved_sent={"am", "hook"},
        )
        await store.save_alert(firing)
        await store.save_alert(resolved)
        await store.close()

        again = await reopened(backend)
        try:
            assert await again.load_alerts() == [firing, resolved]
        finally:
            await again.close()

    async def test_saving_a_fingerprint_again_replaces_it_and_delete_forgets_it(
        self, store: Store
    ) -> None:
        await store.save_alerts([alert("fp-1"), alert("fp-2")])
        updated = alert("fp-1", state="resolved", ends_at=2000.0, resolved_sent={"am"})
        await store.save_alert(updated)
        await store.delete_alert("fp-2")
        await store.delete_alert("never-there")
        assert await store.load_alerts() == [updated]


class TestMeta:
    async def test_values_are_kept_and_replaced_and_missing_ones_are_none(
        self, store: Store, backend: Backend
    ) -> None:
        assert await store.meta_get("instance") is None
        await store.meta_set("instance", "a")
        await store.meta_set("instance", "b")
        await store.close()
        again = await reopened(backend)
        try:
            assert await again.meta_get("instance") == "b"
            assert await again.meta_get("schema_version") == backend.schema_version
        finally:
            await again.close()


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


CHILD = """
import asyncio
import sys
from pathlib import Path

from monitor.models import Source, Status, Task, Transition
from monitor.store import SqliteStore
from monitor.store.redis import RedisStore


async def main() -> None:
    target = sys.argv[1]
    if target.startswith("sqlite:"):
        store = SqliteStore(Path(target.removeprefix("sqlite:")))
    else:
        store = RedisStore(target, sys.argv[2])
    await store.open()
    i = 0
    while True:
        task = Task(1400000001, f"t-{i}", "ap-guangzhou", "default", registered_at=float(i))
        await store.save_task(task)
        print(f"acked task {task.task_id}", flush=True)
        for n, to in enumerate((Status.IDLE, Status.IN_PROGRESS, Status.EXITED)):
            transition = Transition(
                task.sdk_app_id, task.task_id, task.status, to, float(i) + n, Source.POLL,
                request_id=f"req-{i}-{n}",
            )
            task.status = to
            recorded = await store.record_transition(task, transition)
            print(f"acked {recorded.seq} {task.task_id} {to.value}", flush=True)
        i += 1


asyncio.run(main())
"""


class TestCrashDurability:
    async def test_every_acknowledged_write_survives_kill_9(
        self, tmp_path: Path, backend: Backend
    ) -> None:
        script = tmp_path / "writer.py"
        script.write_text(textwrap.dedent(CHILD))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            backend.target,
            KEY_PREFIX,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        lines: list[str] = []
        try:
            while sum(1 for line in lines if not line.startswith("acked task")) < 300:
                line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
                if not line:
                    assert child.stderr is not None
                    pytest.fail(f"writer died: {(await child.stderr.read()).decode()}")
                lines.append(line.decode().strip())
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        # Acks already in the pipe were printed after their write returned: they count too.
        rest = await child.stdout.read()
        lines += [line for line in rest.decode().splitlines() if line]
        assert child.returncode == -signal.SIGKILL

        acked_tasks = {line.split()[2] for line in lines if line.startswith("acked task")}
        acked = [line.split() for line in lines if not line.startswith("acked task")]
        acked_seqs = {int(parts[1]): (parts[2], parts[3]) for parts in acked}
        last_acked = max(acked_seqs)

        store = await reopened(backend)
        try:
            tasks = {t.task_id: t for t in await store.load_tasks()}
            history = await store.recent_transitions(last_acked + 1000)
        finally:
            await store.close()

        stored = {t.seq: (t.task_id, t.to_status.value) for t in history}
        assert acked_tasks <= set(tasks)
        for seq in range(1, last_acked + 1):
            assert seq in stored, f"acknowledged transition {seq} was lost"
        for seq, fact in acked_seqs.items():
            assert stored[seq] == fact
        # Each task's state is the one its newest stored transition left it in.
        newest: dict[str, str] = {}
        for t in sorted(history, key=lambda t: t.seq or 0):
            newest[t.task_id] = t.to_status.value
        for task_id, task in tasks.items():
            assert task.status.value == newest.get(task_id, Status.PENDING.value)


class TestUpgrade:
    async def test_a_version_1_file_is_upgraded_in_place_keeping_its_tasks(
        self, tmp_path: Path
    ) -> None:
        from monitor.store.sqlite.schema import MIGRATIONS as _MIGRATIONS

        path = tmp_path / "v1.db"
        side = sqlite3.connect(path)
        side.executescript(_MIGRATIONS[0])
        side.execute(
            "INSERT INTO tasks VALUES (?, 't-1', 'ap-beijing', 'default', '{}', NULL, 1.0, "
            "'api', 'InProgress', 2.0, 0, NULL, NULL, 3.0, NULL, NULL, NULL, '{}', NULL)",
            (APP,),
        )
        side.execute("PRAGMA user_version = 1")
        side.commit()
        side.close()
        async with SqliteStore(path) as store:
            [task] = await store.load_tasks()
        assert (task.task_id, task.status, task.last_success_at) == ("t-1", Status.IN_PROGRESS, 3.0)
        assert task.observed_at == 0.0
        side = sqlite3.connect(path)
        assert side.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        side.close()
