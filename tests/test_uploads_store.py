"""The upload state is stored with its task: it survives a restart, and old stores migrate."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from monitor.models import Source, Status, Task
from monitor.store import SCHEMA_VERSION, SqliteStore
from monitor.store.sqlite.schema import MIGRATIONS as _MIGRATIONS
from monitor.store.sqlite.schema import statements as _statements
from monitor.uploads import (
    NO_UPLOAD,
    FileKind,
    UploadEvent,
    UploadFile,
    UploadPhase,
    UploadState,
    apply_upload_event,
)

T0 = 1_700_000_000.0


def done_vod() -> UploadState:
    state = NO_UPLOAD
    vod = UploadFile(FileKind.VOD, file_id="5285890781234", url="https://vod.example.com/a.mp4")
    for event in (
        UploadEvent(302, at=T0),
        UploadEvent(311, 0, files=(vod,), at=T0 + 5),
        UploadEvent(312, 0, at=T0 + 6),
    ):
        state = apply_upload_event(state, event, T0 + 10).state
    return state


def task(upload: UploadState = NO_UPLOAD) -> Task:
    return Task(
        sdk_app_id=1400000001,
        task_id="t-up",
        region="ap-guangzhou",
        account="default",
        registered_at=T0,
        status=Status.ENDED,
        status_since=T0,
        source=Source.CALLBACK,
        upload=upload,
    )


class TestUploadStore:
    async def test_a_restart_keeps_the_upload_state_and_its_files(self, tmp_path: Path) -> None:
        state = done_vod()
        assert state.state is UploadPhase.DONE
        async with SqliteStore(tmp_path / "m.db") as store:
            await store.save_task(task(state))
        async with SqliteStore(tmp_path / "m.db") as store:
            (loaded,) = await store.load_tasks()
        assert loaded.upload == state
        assert loaded.upload.files[0].file_id == "5285890781234"

    async def test_a_task_without_upload_events_stores_nothing_for_them(
        self, tmp_path: Path
    ) -> None:
        async with SqliteStore(tmp_path / "m.db") as store:
            await store.save_task(task())
            (loaded,) = await store.load_tasks()
        assert loaded.upload is NO_UPLOAD
        with sqlite3.connect(tmp_path / "m.db") as conn:
            assert conn.execute("SELECT upload FROM tasks").fetchall() == [(None,)]

    async def test_a_store_from_before_uploads_migrates_and_its_tasks_have_no_upload(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as conn:
            for statement in _statements(_MIGRATIONS[0]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO tasks (sdk_app_id, task_id, region, account, labels, interval, "
                "registered_at, source, status, status_since, consecutive_errors, extra) "
                "VALUES (1400000001, 'old', 'ap-guangzhou', 'default', '{}', NULL, ?, 'api', "
                "'InProgress', ?, 0, '{}')",
                (T0, T0),
            )
            conn.execute("PRAGMA user_version = 1")
        assert SCHEMA_VERSION >= 3
        async with SqliteStore(path) as store:
            (old,) = await store.load_tasks()
            assert old.upload is NO_UPLOAD
            old.upload = done_vod()
            await store.save_task(old)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            (stored,) = conn.execute("SELECT upload FROM tasks").fetchone()
        assert json.loads(stored)["state"] == "done"
