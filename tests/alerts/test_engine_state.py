"""The alert records: the firing gauge, store writes, copies, and the handover between replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.alerts import ALERT_NAMES, AlertEngine
from monitor.alerts.engine import SWEEP_CHUNK
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Source, Status, Task, Transition
from monitor.status_rules import apply_removal
from tests.alerts.engine_support import (
    CountingStore,
    Harness,
    alerts_sent,
    am_config,
    settle,
)
from tests.support import APP, T0, ManualClock, make_task
from tests.test_receivers import Sink


class TestStateAndMetrics:
    async def test_the_firing_gauge_has_every_alert_name(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        assert {name: harness.gauge(name) for name in ALERT_NAMES} == dict.fromkeys(
            ALERT_NAMES, 0.0
        )
        tasks = [make_task(f"t-{i}", status=Status.EXITED) for i in range(3)]
        await engine.sweep(tasks)
        assert harness.gauge("RecordingTaskExited") == 3
        assert harness.gauge("RecordingTaskIdle") == 0
        await engine.sweep(tasks[1:])
        assert harness.gauge("RecordingTaskExited") == 2

    async def test_a_sweep_without_changes_does_not_touch_the_store(self, tmp_path: Path) -> None:
        clock = ManualClock(T0 + 10)
        tasks = [make_task(f"t-{i}") for i in range(2000)]
        for task in tasks[:10]:
            task.status = Status.EXITED
        store = CountingStore(tmp_path / "count.db")
        await store.open()
        engine = AlertEngine(
            AlertsConfig(), store, MonitorMetrics(), interval_of=lambda t: 15.0, clock=clock
        )
        await engine.start()
        try:
            await engine.sweep(tasks)
            assert store.writes == 10
            clock.now += 5
            await engine.sweep(tasks)
            await engine.sweep(tasks)
            assert store.writes == 10
        finally:
            await engine.stop()
            await store.close()

    async def test_alerts_that_change_while_a_sweep_yields_are_not_undone_by_it(
        self, harness: Harness
    ) -> None:
        tasks = [make_task(f"t-{i:05}") for i in range(3 * SWEEP_CHUNK)]
        early, late = tasks[0], tasks[-1]
        late.status = Status.ENDED
        late.ended_at = T0
        reached_second_chunk = asyncio.Event()

        def interval_of(task: Task) -> float:
            if task is tasks[SWEEP_CHUNK]:
                reached_second_chunk.set()
            return 15.0

        engine = await harness.engine(AlertsConfig(), interval_of=interval_of)
        sweeping = asyncio.create_task(engine.sweep(tasks))
        await reached_second_chunk.wait()  # resumes only when the sweep yields again
        assert not sweeping.done()
        # Meanwhile (before the sweep gets the loop back): a not-yet-scanned task is purged,
        # and an already-scanned one exits.
        await engine.on_purged([late.key])
        exit_ = Transition(APP, early.task_id, early.status, Status.EXITED, T0, Source.POLL)
        early.status = Status.EXITED
        await engine.evaluate_task(early, exit_)
        await sweeping
        assert [(r.alertname, r.labels["task_id"]) for r in engine.firing()] == [
            ("RecordingTaskExited", early.task_id)
        ]

    async def test_firing_answers_copies(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        await engine.sweep([make_task(status=Status.EXITED)])
        [record] = engine.firing()
        record.labels["task_id"] = "changed"
        assert engine.firing()[0].labels["task_id"] == "t-1"


class TestHandover:
    """Two replicas' engines on one store: a task's alerts move with its ownership."""

    async def test_an_owner_change_neither_repeats_an_exit_alert_nor_loses_its_resolve(
        self, harness: Harness, sink: Sink
    ) -> None:
        owner = {"a"}
        config = am_config(sink.url)
        a = await harness.engine(config, owns=lambda key: "a" in owner)
        b = await harness.engine(config, owns=lambda key: "b" in owner)
        task = make_task()
        stored = await harness.transition(task, Status.EXITED, request_id="req-exit")
        await a.evaluate_task(task, stored)
        await b.evaluate_task(task, stored)  # not b's task: nothing
        await settle(a)
        assert [x["labels"]["alertname"] for x in alerts_sent(sink)] == ["RecordingTaskExited"]
        assert b.firing() == []

        # b takes the task over: a saves and drops its record, b loads it as a left it.
        owner.clear()
        await a.release([task.key])
        owner.add("b")
        assert await b.adopt([task.key]) == 1
        assert a.firing() == []
        [record] = b.firing()
        assert record.last_sent_at  # a's delivery is known: nothing to send again
        harness.clock.now += 5.0
        await b.sweep([task])
        await a.sweep([task])
        await settle(b)
        assert len(alerts_sent(sink)) == 1

        # The new owner resolves it when the task is removed.
        harness.clock.now += 5.0
        apply_removal(task, harness.clock.now)
        removed = await harness.transition(task, Status.REMOVED)
        await b.evaluate_task(task, removed)
        await a.evaluate_task(task, removed)
        await settle(b)
        sent = alerts_sent(sink)
        assert len(sent) == 2
        assert sent[1]["labels"]["alertname"] == "RecordingTaskExited"
        assert sent[1]["endsAt"] != sent[0]["endsAt"]
        assert b.firing() == []

    async def test_monitor_level_alerts_come_from_the_leader_only(
        self, harness: Harness, sink: Sink
    ) -> None:
        leader = {"a"}
        config = am_config(sink.url)
        a = await harness.engine(config, leads=lambda: "a" in leader)
        b = await harness.engine(config, leads=lambda: "b" in leader)
        for engine in (a, b):
            engine.on_api_outcome("default", Outcome.AUTH, harness.clock.now, "AuthFailure")
            await engine.sweep([])
        assert [r.alertname for r in a.firing()] == ["RecordingMonitorAuthFailure"]
        assert b.firing() == []
        await settle(a)
        await settle(b)
        names = [x["labels"]["alertname"] for x in alerts_sent(sink)]
        assert names == ["RecordingMonitorAuthFailure"]
