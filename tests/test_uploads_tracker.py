"""The tracker's part in uploads: stored before applied and announced, stops seen by polls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.events import EventBus, UploadChanged
from monitor.models import Outcome, Source, Status, TaskKey
from monitor.registry import TaskRegistry
from monitor.store import SqliteStore, StoreError
from monitor.taskspec import TaskSpec
from monitor.tracker import Tracker
from monitor.trtc.client import CallResult
from monitor.uploads import Change, UploadEvent, UploadPhase

APP = 1400000001
KEY = TaskKey(APP, "t-1")


def answer(status: str) -> CallResult:
    return CallResult(Outcome.OK, "", request_id="r-1", response={"Status": status})


ENDED = CallResult(Outcome.ENDED, "FailedOperation.TaskNotExist", request_id="r-2")


class Harness:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.registry = TaskRegistry()
        self.bus = EventBus()
        self.clock = [1000.0]
        self.heard: list[UploadChanged] = []
        self.bus.subscribe(UploadChanged, self.heard.append)
        self.tracker = Tracker(store, self.registry, self.bus, clock=lambda: self.clock[0])

    async def registered(self) -> None:
        spec = TaskSpec(sdk_app_id=APP, task_id="t-1", region="ap-guangzhou")
        await self.tracker.register(spec, Source.API)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = SqliteStore(tmp_path / "m.db")
    await store.open()
    try:
        yield Harness(store)
    finally:
        await store.close()


class TestTracker:
    async def test_an_upload_change_is_stored_applied_and_announced_once(
        self, harness: Harness
    ) -> None:
        await harness.registered()
        event = UploadEvent(308, code="E", message="m", at=1000.5)
        change = await harness.tracker.observe_upload(KEY, event)
        assert change is not None
        assert change.change is Change.FAILED
        [stored] = await harness.store.load_tasks()
        task = harness.registry.get(KEY)
        assert task is not None
        assert stored.upload == task.upload == change.state
        assert [e.change.change for e in harness.heard] == [Change.FAILED]
        again = await harness.tracker.observe_upload(KEY, event)
        assert again is not None
        assert not again.changed
        assert len(harness.heard) == 1  # a repeat announces nothing

    async def test_an_unknown_task_is_left_alone(self, harness: Harness) -> None:
        assert await harness.tracker.observe_upload(KEY, UploadEvent(303, 0)) is None
        assert harness.heard == []

    async def test_a_failed_write_changes_nothing_and_announces_nothing(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await harness.registered()

        async def broken(task: object) -> None:
            raise StoreError("disk full")

        monkeypatch.setattr(harness.store, "save_task", broken)
        with pytest.raises(StoreError):
            await harness.tracker.observe_upload(KEY, UploadEvent(305, 1, at=1000.5))
        task = harness.registry.get(KEY)
        assert task is not None
        assert task.upload.state is UploadPhase.NONE
        assert harness.heard == []

    async def test_a_poll_that_sees_the_stop_starts_the_upload_deadline_once(
        self, harness: Harness
    ) -> None:
        await harness.registered()
        await harness.tracker.observe_poll(KEY, answer("InProgress"), sent_at=1000.0)
        await harness.tracker.observe_upload(KEY, UploadEvent(303, 0, at=1000.2))
        harness.clock[0] = 1010.0
        await harness.tracker.observe_poll(KEY, answer("Exited"), sent_at=1010.0)
        task = harness.registry.get(KEY)
        assert task is not None
        assert (task.status, task.upload.stopped_at) == (Status.EXITED, 1010.0)
        harness.clock[0] = 1020.0
        await harness.tracker.observe_poll(KEY, ENDED, sent_at=1020.0)
        task = harness.registry.get(KEY)
        assert task is not None
        assert (task.status, task.upload.stopped_at) == (Status.ENDED, 1010.0)
        [stored] = await harness.store.load_tasks()
        assert stored.upload.stopped_at == 1010.0
