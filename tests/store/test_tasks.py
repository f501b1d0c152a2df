"""The store contract for tasks: save, load, health, delete (both backends)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.models import Source, Status, Task, TaskKey
from monitor.store import Store
from tests.store.helpers import (
    APP,
    Backend,
    alert,
    full_task,
    make_task,
    move,
    reopened,
)


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
