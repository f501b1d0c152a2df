"""A relay recording's RecorderKey (registered) and the answer's RecorderKey survive a restart
on both backends, and records written before the fields existed read back without them."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from monitor.models import Kind, Status
from monitor.store import SCHEMA_VERSION, SqliteStore, Store
from monitor.store.sqlite.schema import MIGRATIONS, statements
from tests.store.helpers import KEY_PREFIX, Backend, RedisSync, make_task, reopened


async def test_recorder_keys_survive_a_restart(store: Store, backend: Backend) -> None:
    task = make_task("relay", Status.IN_PROGRESS, recorder_key="room_42-a")
    await store.save_task(task)
    answered = replace(task, answer_recorder_key="room_42-a", consecutive_errors=0)
    await store.save_health([answered])
    await store.close()
    again = await reopened(backend)
    try:
        (loaded,) = await again.load_tasks()
    finally:
        await again.close()
    assert loaded.recorder_key == "room_42-a"
    assert loaded.answer_recorder_key == "room_42-a"


async def test_a_task_without_a_key_reads_back_without_one(store: Store) -> None:
    await store.save_task(make_task("plain", Status.IN_PROGRESS))
    (loaded,) = await store.load_tasks()
    assert loaded.recorder_key is None
    assert loaded.answer_recorder_key is None


async def test_a_redis_record_of_an_earlier_version_reads_without_keys(
    backend: Backend, redis_sync: RedisSync
) -> None:
    if backend.name != "redis":
        return
    s = backend.make()
    await s.open()
    await s.save_task(make_task("old", Status.IN_PROGRESS, recorder_key="k1"))
    await s.close()
    client = redis_sync(backend)
    field = "1400000001:old"
    for name in ("tasks", "health"):
        key = f"{KEY_PREFIX}{name}"
        raw = client.hget(key, field)
        assert isinstance(raw, bytes)
        values = json.loads(raw)
        client.hset(key, field, json.dumps(values[:-1]))  # as written before the new fields
    s = await reopened(backend)
    try:
        (loaded,) = await s.load_tasks()
    finally:
        await s.close()
    assert loaded.task_id == "old"
    assert loaded.status is Status.IN_PROGRESS
    assert loaded.recorder_key is None


async def test_a_version_3_file_migrates_and_keeps_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:3]:
            for statement in statements(script):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO tasks (sdk_app_id, task_id, region, account, labels, interval, "
            "registered_at, source, status, status_since, consecutive_errors, extra) "
            "VALUES (1400000001, 'old', 'ap-guangzhou', 'default', '{}', NULL, 1000, 'api', "
            "'InProgress', 1000, 0, '{}')"
        )
        conn.execute("PRAGMA user_version = 3")
    assert SCHEMA_VERSION >= 4
    async with SqliteStore(path) as store:
        (old,) = await store.load_tasks()
        assert old.recorder_key is None
        assert old.answer_recorder_key is None
        await store.save_task(replace(old, recorder_key="k-2", answer_recorder_key="k-2"))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT recorder_key, answer_recorder_key FROM tasks").fetchall() == [
            ("k-2", "k-2")
        ]


async def test_a_web_task_keeps_its_kind_and_a_cloud_task_stores_none(
    store: Store, backend: Backend
) -> None:
    await store.save_task(make_task("web", Status.IN_PROGRESS, kind=Kind.WEB))
    await store.save_task(make_task("cloud", Status.IN_PROGRESS))
    await store.close()
    again = await reopened(backend)
    try:
        kinds = {t.task_id: t.kind for t in await again.load_tasks()}
    finally:
        await again.close()
    assert kinds == {"web": Kind.WEB, "cloud": Kind.CLOUD}
