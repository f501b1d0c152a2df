"""Tasks registered together with the same labels share one labels dict in memory; every field
of every one still round-trips through the store (SQLite and Redis), and changing one task's
labels changes no other task."""

from __future__ import annotations

from monitor.events import EventBus
from monitor.models import Source, Task, TaskKey
from monitor.registry import TaskRegistry
from monitor.store import Store
from monitor.taskspec import TaskUpdate, validate_spec
from monitor.tracker import Tracker

APP = 1400000001
ROOM_1 = {"room": "r1", "customer": "c1"}
ROOM_2 = {"room": "r2"}


def specs() -> list[dict[str, object]]:
    return [
        {"sdk_app_id": APP, "task_id": "a", "region": "ap-beijing", "labels": dict(ROOM_1)},
        {"sdk_app_id": APP, "task_id": "b", "region": "ap-guangzhou", "labels": dict(ROOM_1)},
        {"sdk_app_id": APP, "task_id": "c", "region": "ap-beijing", "labels": dict(ROOM_2)},
        # The same pairs in another order are the same label set.
        {"sdk_app_id": APP, "task_id": "d", "region": "ap-beijing",
         "labels": {"customer": "c1", "room": "r1"}, "interval": 30},
        {"sdk_app_id": APP, "task_id": "e", "region": "ap-beijing", "labels": {}},
        {"sdk_app_id": APP, "task_id": "f", "region": "ap-beijing", "labels": dict(ROOM_2),
         "recorder_key": "rk-1"},
    ]  # fmt: skip


def key(task_id: str) -> TaskKey:
    return TaskKey(APP, task_id)


async def registered(store: Store) -> tuple[Tracker, TaskRegistry]:
    registry = TaskRegistry()
    tracker = Tracker(store, registry, EventBus(), clock=lambda: 1_700_000_000.25)
    answers = await tracker.register_many([validate_spec(s, None) for s in specs()], Source.API)
    assert [created for _, created in answers] == [True] * len(specs())
    return tracker, registry


def table(registry: TaskRegistry) -> dict[TaskKey, Task]:
    return {t.key: t for t in registry}


class TestBulkLabelSets:
    async def test_equal_label_sets_share_one_dict_and_every_field_round_trips(
        self, store: Store
    ) -> None:
        _, registry = await registered(store)
        a, b, c, d, e, f = (registry.get(key(i)) for i in "abcdef")
        assert a is not None
        assert b is not None
        assert c is not None
        assert d is not None
        assert e is not None
        assert f is not None
        assert a.labels is b.labels is d.labels
        assert c.labels is f.labels
        assert a.labels is not c.labels
        assert e.labels == {}
        assert (a.labels, c.labels) == (ROOM_1, ROOM_2)
        loaded = {t.key: t for t in await store.load_tasks()}
        assert loaded == table(registry)  # every stored field, each task
        assert (loaded[key("d")].interval, loaded[key("f")].recorder_key) == (30, "rk-1")

    async def test_changing_one_tasks_labels_leaves_the_others_as_they_were(
        self, store: Store
    ) -> None:
        tracker, registry = await registered(store)
        updated = await tracker.update_task(key("a"), TaskUpdate(labels={"room": "r9"}))
        assert updated is not None
        assert updated.labels == {"room": "r9"}
        for other in "bd":
            task = registry.get(key(other))
            assert task is not None
            assert task.labels == ROOM_1
        loaded = {t.key: t for t in await store.load_tasks()}
        assert loaded[key("a")].labels == {"room": "r9"}
        assert loaded[key("b")].labels == loaded[key("d")].labels == ROOM_1
        assert loaded == table(registry)
