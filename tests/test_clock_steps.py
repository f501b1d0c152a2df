"""Wall-clock steps inside the daemon's process: which observation of a task is newer, and how
long a task has gone unobserved or idle, never depend on the wall clock.

Every test drives the tracker (and the alert engine) with two fake clocks: a wall clock that
the test steps back and forward at the worst moments (between a poll's send and its answer,
between a callback and a poll), and a monotonic clock that only moves forward.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.alerts import AlertEngine
from monitor.alerts.conditions import IDLE, Thresholds, task_alerts
from monitor.config import AlertsConfig
from monitor.events import EventBus
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Source, Status, Task, TaskKey
from monitor.registry import TaskRegistry
from monitor.store import SqliteStore
from monitor.taskspec import TaskSpec
from monitor.tracker import Tracker
from monitor.trtc.client import CallResult
from monitor.uploads import UploadEvent

APP = 1400000001
T0 = 1_700_000_000.0
STEP = 240.0
ENDED = CallResult(Outcome.ENDED, "FailedOperation.TaskNotExist", "gone", request_id="r-end")


def answer(status: str) -> CallResult:
    return CallResult(Outcome.OK, "", request_id=f"r-{status}", response={"Status": status})


class Clocks:
    """A wall clock the test steps at will, and a monotonic clock that only moves forward."""

    def __init__(self) -> None:
        self.wall_now = T0
        self.mono_now = 500.0

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def elapse(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds

    def step(self, seconds: float) -> None:
        """The wall clock is set: the monotonic clock does not notice."""
        self.wall_now += seconds


class Replica:
    """A tracker with its own table and clocks: one process of the monitor."""

    def __init__(self, store: SqliteStore) -> None:
        self.clocks = Clocks()
        self.registry = TaskRegistry()
        self.tracker = Tracker(
            store, self.registry, EventBus(), clock=self.clocks.wall, mono=self.clocks.mono
        )

    def task(self, task_id: str) -> Task:
        task = self.registry.get(TaskKey(APP, task_id))
        assert task is not None
        return task

    async def register(self, task_id: str) -> TaskKey:
        spec = TaskSpec(sdk_app_id=APP, task_id=task_id, region="ap-guangzhou")
        task, created = await self.tracker.register(spec, Source.API)
        assert created
        return task.key

    def send(self) -> tuple[float, float]:
        """A poll goes out: its wall-clock and monotonic send times, as the poller takes them."""
        return self.clocks.wall(), self.tracker.tick()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "monitor.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def history(store: SqliteStore, key: TaskKey) -> list[Status]:
    return [t.to_status for t in await store.transitions(key, newest_first=False)]


class TestOrderOfObservations:
    async def test_an_answer_that_comes_back_after_a_step_back_is_news_and_so_are_later_ones(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        key = await one.register("t-1")
        await one.tracker.observe_poll(key, answer("InProgress"), *one.send())
        one.clocks.elapse(2)
        sent = one.send()
        one.clocks.step(-STEP)  # between the send and the answer
        one.clocks.elapse(0.1)
        applied = await one.tracker.observe_poll(key, answer("InProgress"), *sent)
        assert not applied.outdated
        # Every poll sent in the stepped-back window is news: the exit is seen at once.
        one.clocks.elapse(2)
        applied = await one.tracker.observe_poll(key, answer("Exited"), *one.send())
        assert not applied.outdated
        assert applied.transition is not None
        assert applied.transition.at == one.clocks.wall_now  # stamped for people, wall clock
        one.clocks.step(2 * STEP)  # and forward again
        one.clocks.elapse(2)
        applied = await one.tracker.observe_poll(key, ENDED, *one.send())
        assert not applied.outdated
        assert one.task("t-1").status is Status.ENDED
        assert await history(store, key) == [Status.IN_PROGRESS, Status.EXITED, Status.ENDED]

    async def test_a_callback_between_a_polls_send_and_its_answer_wins_across_a_step(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        for task_id, step in (("t-back", -STEP), ("t-forward", STEP)):
            key = await one.register(task_id)
            await one.tracker.observe_poll(key, answer("InProgress"), *one.send())
            one.clocks.elapse(2)
            sent = one.send()  # the poll goes out; TRTC answers it before the stop ...
            one.clocks.step(step)
            one.clocks.elapse(0.5)
            # ... the recorder stops: its event time comes from TRTC's clock (here, ours).
            exit_ = await one.tracker.observe_exit(key, 3, {}, at=one.clocks.wall_now - 0.2)
            assert exit_ is not None
            one.clocks.elapse(0.1)
            applied = await one.tracker.observe_poll(key, answer("InProgress"), *sent)
            assert applied.outdated, task_id
            assert applied.transition is None
            assert one.task(task_id).status is Status.EXITED
            # The poll that confirms the callback, sent after it, is news.
            one.clocks.elapse(0.1)
            applied = await one.tracker.observe_poll(key, answer("Exited"), *one.send())
            assert not applied.outdated
            assert await history(store, key) == [Status.IN_PROGRESS, Status.EXITED], task_id

    async def test_a_poll_sent_after_a_callback_is_news_though_the_clock_went_back(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        key = await one.register("t-1")
        await one.tracker.observe_poll(key, answer("InProgress"), *one.send())
        one.clocks.elapse(2)
        assert await one.tracker.observe_exit(key, 3, {}, at=one.clocks.wall_now - 0.1)
        one.clocks.step(-STEP)
        one.clocks.elapse(1)
        applied = await one.tracker.observe_poll(key, ENDED, *one.send())
        assert not applied.outdated
        assert one.task("t-1").status is Status.ENDED
        assert await history(store, key) == [Status.IN_PROGRESS, Status.EXITED, Status.ENDED]

    async def test_an_answer_to_an_earlier_poll_never_overrides_a_later_one_across_a_step(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        key = await one.register("t-1")
        await one.tracker.observe_poll(key, answer("InProgress"), *one.send())
        one.clocks.elapse(2)
        first = one.send()  # a slow answer ...
        one.clocks.step(-STEP)
        one.clocks.elapse(2)
        second = one.send()  # ... overtaken by the next poll's
        applied = await one.tracker.observe_poll(key, answer("Exited"), *second)
        assert not applied.outdated
        applied = await one.tracker.observe_poll(key, answer("InProgress"), *first)
        assert applied.outdated
        assert one.task("t-1").status is Status.EXITED
        assert await history(store, key) == [Status.IN_PROGRESS, Status.EXITED]

    async def test_a_callback_taken_on_another_replica_wins_over_an_answer_sent_before_it(
        self, store: SqliteStore
    ) -> None:
        # Two replicas on one store, their wall clocks far apart (one was just set back). The
        # owner polls; the 302 reaches the other one, which records it; the owner hears of it
        # (the change feed) and takes the record from the store.
        owner, other = Replica(store), Replica(store)
        other.clocks.step(-STEP)
        key = await owner.register("t-1")
        await owner.tracker.observe_poll(key, answer("InProgress"), *owner.send())
        owner.clocks.elapse(2)
        other.clocks.elapse(2)
        sent = owner.send()
        await other.tracker.reload(key)  # the other replica reads the task first
        assert await other.tracker.observe_exit(key, 3, {}, at=other.clocks.wall_now - 0.1)
        owner.clocks.elapse(0.05)
        await owner.tracker.reload(key)
        assert owner.task("t-1").status is Status.EXITED
        owner.clocks.elapse(0.05)
        applied = await owner.tracker.observe_poll(key, answer("InProgress"), *sent)
        assert applied.outdated
        assert owner.task("t-1").status is Status.EXITED
        owner.clocks.elapse(0.1)
        applied = await owner.tracker.observe_poll(key, answer("Exited"), *owner.send())
        assert not applied.outdated
        assert await history(store, key) == [Status.IN_PROGRESS, Status.EXITED]
        [stored] = await store.load_tasks()
        assert stored.status is Status.EXITED


class TestAgesOnTheMonotonicClock:
    async def test_a_forward_step_fakes_no_stale_or_idle_alert_and_a_backward_one_hides_none(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        config = AlertsConfig.model_validate(
            {"stale": {"after": "30s"}, "idle": {"after": "60s"}, "exit": {"enabled": False}}
        )
        engine = AlertEngine(
            config,
            store,
            MonitorMetrics(),
            interval_of=lambda task: 2.0,
            clock=one.clocks.wall,
            mono=one.clocks.mono,
        )
        await engine.start()
        try:
            key = await one.register("t-1")
            await one.tracker.observe_poll(key, answer("Idle"), *one.send())
            one.clocks.elapse(1)

            async def firing() -> set[str]:
                await engine.sweep(one.registry.tasks())
                return {r.alertname for r in engine.firing()}

            one.clocks.step(STEP)  # observed a second ago, Idle for a second
            assert await firing() == set()
            one.clocks.step(-2 * STEP)
            one.clocks.elapse(31)  # unobserved for 32 s, Idle for 32 s
            assert await firing() == {"RecordingTaskStale"}
            one.clocks.elapse(30)  # Idle for 62 s
            assert await firing() == {"RecordingTaskStale", "RecordingTaskIdle"}
            await one.tracker.observe_poll(key, answer("Idle"), *one.send())
            assert await firing() == {"RecordingTaskIdle"}
        finally:
            await engine.stop()

    async def test_the_upload_deadline_counts_on_the_monotonic_clock_from_the_stop(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        config = AlertsConfig.model_validate(
            {
                "upload": {"deadline": "200s"},
                "exit": {"enabled": False},
                "stale": {"enabled": False},
                "idle": {"enabled": False},
            }
        )
        engine = AlertEngine(
            config,
            store,
            MonitorMetrics(),
            interval_of=lambda task: 2.0,
            clock=one.clocks.wall,
            mono=one.clocks.mono,
        )
        await engine.start()
        try:
            polled, called = await one.register("t-poll"), await one.register("t-callback")
            for key in (polled, called):
                await one.tracker.observe_poll(key, answer("InProgress"), *one.send())
                await one.tracker.observe_upload(key, UploadEvent(303, 0, at=one.clocks.wall_now))
            one.clocks.elapse(5)
            one.clocks.step(STEP)  # ours is set forward; TRTC's clock is not
            # One stop seen by a poll, one reported by the 302 (its time by TRTC's clock).
            await one.tracker.observe_poll(polled, answer("Exited"), *one.send())
            trtc_now = one.clocks.wall_now - STEP
            await one.tracker.observe_upload(called, UploadEvent(302, at=trtc_now - 1))
            assert one.task("t-poll").upload.stopped_at is not None
            assert one.task("t-callback").upload.stopped_at == trtc_now - 1

            async def overdue() -> set[str]:
                await engine.sweep(one.registry.tasks())
                return {r.labels["task_id"] for r in engine.firing()}

            one.clocks.elapse(10)
            assert await overdue() == set()  # 10 s after the stops
            one.clocks.step(STEP)  # and on: the wall clock says 490 s
            assert await overdue() == set()
            one.clocks.step(-3 * STEP)
            one.clocks.elapse(195)  # 205 s after the stops: overdue, whatever the clock says
            assert await overdue() == {"t-poll", "t-callback"}
        finally:
            await engine.stop()

    async def test_a_record_read_at_start_up_counts_its_ages_from_its_stamps_once(
        self, store: SqliteStore
    ) -> None:
        one = Replica(store)
        wall = one.clocks.wall_now
        await store.save_task(
            Task(
                sdk_app_id=APP,
                task_id="t-1",
                region="ap-guangzhou",
                account="default",
                registered_at=wall - 600,
                status=Status.IDLE,
                status_since=wall - 100,
                last_success_at=wall - 5,
            )
        )
        one.registry.put_many(await store.load_tasks())  # as the daemon starts
        th = Thresholds(idle_after=150.0, stale_enabled=False)

        def idle() -> bool:
            bits = task_alerts(
                one.task("t-1"), one.clocks.wall_now, th, lambda task: 2.0, 0.0, one.clocks.mono()
            )
            return bool(bits & IDLE)

        sent = one.send()
        await one.tracker.observe_poll(TaskKey(APP, "t-1"), answer("Idle"), *sent)
        task = one.task("t-1")
        assert task.polled_mono == sent[1]
        assert task.since_mono == one.clocks.mono_now - 100  # Idle for 100 s, on its clock now
        one.clocks.step(STEP)
        assert not idle()  # the wall clock says 340 s
        one.clocks.step(-2 * STEP)
        one.clocks.elapse(51)
        assert idle()  # 151 s, though the wall clock says -89 s
