"""The order of observations: an answer to a poll sent before the newest observation of a
task (a callback, a later poll) carries older news and never overrides it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.alerts import TASK_EXITED
from monitor.events import EventBus
from monitor.models import Outcome, Source, Status, TaskKey
from monitor.registry import TaskRegistry
from monitor.simulator import (
    Fault,
    FaultKind,
    Simulator,
)
from monitor.store import SqliteStore
from monitor.taskspec import TaskSpec
from monitor.tracker import Tracker
from monitor.trtc.client import CallResult
from tests.alerts_e2e_support import alerts_yaml, notices, register, task_of, webhook
from tests.conftest import DaemonFactory
from tests.daemon_support import (
    APP,
    CALLBACK_KEY,
    CALLBACKS,
    LIVE,
    post_callback,
    reach,
    stop_body,
)
from tests.support import wait_for_async
from tests.test_receivers import Sink, serving


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


def _answer(status: str) -> CallResult:
    return CallResult(Outcome.OK, "", request_id="r-1", response={"Status": status})


class TestAnOlderAnswerNeverOverridesANewerObservation:
    async def test_the_tracker_keeps_a_callback_exit_against_a_poll_sent_before_it(
        self, tmp_path: Path
    ) -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.open()
        try:
            registry = TaskRegistry()
            clock = [1000.0]
            tracker = Tracker(
                store, registry, EventBus(), clock=lambda: clock[0], mono=lambda: clock[0]
            )
            key = TaskKey(APP, "t-1")
            spec = TaskSpec(sdk_app_id=APP, task_id="t-1", region="ap-guangzhou")
            await tracker.register(spec, Source.API)
            await tracker.observe_poll(key, _answer("InProgress"), sent_at=1000.0)
            sent_before = 1001.0  # a poll goes out ...
            clock[0] = 1002.0
            assert await tracker.observe_exit(key, 3, {}, at=1001.5)  # ... the recorder stops
            clock[0] = 1003.0
            applied = await tracker.observe_poll(
                key, _answer("InProgress"), sent_before, sent_tick=sent_before
            )
            assert applied.outdated
            assert applied.transition is None
            task = registry.get(key)
            assert task is not None
            assert task.status is Status.EXITED
            # A poll sent after the stop is news, whatever it says.
            applied = await tracker.observe_poll(key, _answer("Exited"), sent_at=1003.0)
            assert not applied.outdated
            history = [t.to_status for t in await store.transitions(key, newest_first=False)]
            assert history == [Status.IN_PROGRESS, Status.EXITED]
        finally:
            await store.close()

    async def test_a_poll_in_flight_across_a_302_does_not_flip_the_task_back(
        self, simulator: Simulator, make_daemon: DaemonFactory, sink: Sink
    ) -> None:
        os.environ["TEST_CALLBACK_KEY"] = CALLBACK_KEY
        try:
            running = await make_daemon(simulator.url, CALLBACKS + alerts_yaml(webhook(sink.url)))
        finally:
            del os.environ["TEST_CALLBACK_KEY"]
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)
        # The next poll is held 1.5 s by the simulator, which answers InProgress after it.
        simulator.faults.add(
            Fault(FaultKind.LATENCY, latency=1.5, count=1, task_ids=frozenset({task_id}))
        )

        def delayed() -> bool:
            return any(
                a.task_id == task_id and a.fault == FaultKind.LATENCY.value
                for a in list(simulator.arrivals)
            )

        async def in_flight() -> bool:
            return delayed()

        await wait_for_async(in_flight, timeout=10, what="a poll held by the simulator")
        status, _ = await post_callback(running, stop_body(task_id))
        assert status == 200
        assert task_of(running, task_id).status is Status.EXITED
        # Every later poll fails (no status): only the held answer could flip the task back.
        simulator.faults.add(Fault(FaultKind.INTERNAL_ERROR, task_ids=frozenset({task_id})))

        async def held_answer_back() -> bool:
            return bool(task_of(running, task_id).consecutive_errors >= 1)

        await wait_for_async(held_answer_back, timeout=15, what="the held answer and a later poll")
        assert task_of(running, task_id).status is Status.EXITED
        history = [
            (t.from_status, t.to_status)
            for t in await running.daemon.tracker.transitions(TaskKey(APP, task_id))
        ]
        assert history[0] == (Status.IN_PROGRESS, Status.EXITED)
        assert Status.IN_PROGRESS not in [to for _, to in history[:1]]
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1
        assert notices(sink, TASK_EXITED, task_id, "resolved") == []
