"""``RecordingTaskNotFound``: a task whose first answer says it does not exist (a mistyped
TaskId, SdkAppId or region) is a warning with a hint, not a critical "stopped" exit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from monitor.alerts import AlertEngine
from monitor.alerts.conditions import EXITED, NOT_FOUND, Thresholds, task_alerts
from monitor.alerts.kinds import NO_TASK_ALERT, TASK_EXITED, TASK_NOT_FOUND, TaskKind
from monitor.alerts.payloads import Notice
from monitor.alerts.robots.messages import facts_of
from monitor.alerts.task_rules import not_found_annotations
from monitor.alerts.texts import NOT_FOUND_HINT
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Source, Status, Task
from monitor.simulator import Life, Simulator
from monitor.status_rules import apply_callback_exit, apply_poll
from monitor.store import SqliteStore
from monitor.trtc.client import CallResult
from tests.conftest import DaemonFactory, RunningDaemon

T0 = 1_700_000_000.0
APP = 1400000001
GONE = CallResult(Outcome.ENDED, "ResourceNotFound", "gone", request_id="req-gone")


def new_task(**fields: Any) -> Task:
    return Task(
        sdk_app_id=APP,
        task_id="t-typo",
        region="ap-guangzhou",
        account="default",
        registered_at=T0,
        status_since=T0,
        **fields,
    )


def ok(status: str) -> CallResult:
    return CallResult(
        Outcome.OK, "", request_id="req-ok", response={"Status": status, "RequestId": "req-ok"}
    )


def bits(task: Task, th: Thresholds | None = None) -> TaskKind:
    return task_alerts(task, T0 + 10, th or Thresholds(), lambda _: 15.0)


class TestCondition:
    def test_ended_on_the_first_answer_is_not_found_and_not_an_exit(self) -> None:
        task = new_task()
        effect = apply_poll(task, GONE, T0 + 1)
        assert effect.transition is not None
        assert effect.transition.from_status is Status.PENDING
        assert task.status is Status.ENDED
        assert bits(task) & NOT_FOUND
        assert not bits(task) & EXITED

    def test_a_task_seen_running_is_an_exit(self) -> None:
        task = new_task()
        apply_poll(task, ok("InProgress"), T0 + 1)
        apply_poll(task, GONE, T0 + 2)
        assert task.status is Status.ENDED
        assert bits(task) & EXITED
        assert not bits(task) & NOT_FOUND

    def test_a_task_a_callback_saw_stop_is_an_exit(self) -> None:
        task = new_task()
        apply_callback_exit(task, T0 + 1, leave_code=3)
        task.extra = {"leave_code": 3}
        apply_poll(task, GONE, T0 + 2)
        assert bits(task) & EXITED
        assert not bits(task) & NOT_FOUND

    def test_a_task_registered_by_a_callback_was_seen(self) -> None:
        task = new_task(source=Source.CALLBACK)
        apply_poll(task, GONE, T0 + 1)
        assert bits(task) & EXITED
        assert not bits(task) & NOT_FOUND

    def test_the_exit_switch_covers_it_too(self) -> None:
        task = new_task()
        apply_poll(task, GONE, T0 + 1)
        assert bits(task, Thresholds(exit_enabled=False)) == NO_TASK_ALERT

    def test_what_it_says(self) -> None:
        task = new_task()
        effect = apply_poll(task, GONE, T0 + 1)
        said = not_found_annotations(task, effect.transition)
        assert "not found: never seen running" in said["summary"]
        description = said["description"]
        assert NOT_FOUND_HINT == "never seen running: check TaskId, SdkAppId and region"
        assert NOT_FOUND_HINT in description
        assert "went from Pending to Ended" in description
        assert "error code ResourceNotFound" in description
        assert "request id req-gone" in description

    def test_the_robots_say_it_too(self) -> None:
        task = new_task()
        effect = apply_poll(task, GONE, T0 + 1)
        notice = Notice(
            fingerprint="f",
            alertname=TASK_NOT_FOUND,
            labels={"alertname": TASK_NOT_FOUND, "task_id": "t-typo", "severity": "warning"},
            annotations=not_found_annotations(task, effect.transition),
            firing=True,
            starts_at=T0 + 1,
            ends_at=None,
        )
        facts = facts_of(notice)
        assert (facts.from_status, facts.to_status) == ("Pending", "Ended")
        assert facts.code == "error code ResourceNotFound"
        assert facts.meaning == NOT_FOUND_HINT
        assert facts.request_id == "req-gone"


def names(running: RunningDaemon) -> dict[str, Any]:
    return {record.alertname: record for record in running.daemon.alerts.firing()}


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class TestDaemon:
    async def test_a_mistyped_sdk_app_id_warns_instead_of_paging(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        # Lives chosen, not drawn: both record until the test ends one.
        real = simulator.add_task(APP, life=Life(idle=0.2, in_progress=None))
        seen = simulator.add_task(APP, life=Life(idle=0.2, in_progress=None))
        # The real task, under a SdkAppId it does not belong to: the API says it does not exist.
        assert (await running.register(APP + 1, real)).status == 201
        assert (await running.register(APP, seen)).status == 201
        await wait_until(lambda: TASK_NOT_FOUND in names(running), 20, "RecordingTaskNotFound")
        record = names(running)[TASK_NOT_FOUND]
        assert record.labels["severity"] == "warning"
        assert record.labels["sdk_app_id"] == str(APP + 1)
        assert record.labels["task_id"] == real
        assert NOT_FOUND_HINT in record.annotations["description"]
        assert TASK_EXITED not in names(running)
        # The task seen running, then gone, still pages as an exit.
        simulator.end_task(APP, seen)
        await wait_until(lambda: TASK_EXITED in names(running), 30, "RecordingTaskExited")
        assert names(running)[TASK_EXITED].labels["task_id"] == seen
        assert names(running)[TASK_EXITED].labels["severity"] == "critical"


class TestEngineWithoutTheTransition:
    async def test_a_sweep_after_a_restart_finds_the_answer_in_the_store(
        self, tmp_path: Path
    ) -> None:
        # The transition was stored, the alert not yet (the process died in between): the
        # sweep fires it and reads what the API answered from the stored history.
        async with SqliteStore(tmp_path / "m.db") as store:
            task = new_task()
            effect = apply_poll(task, GONE, T0 + 1)
            assert effect.transition is not None
            await store.record_transition(task, effect.transition)
            engine = AlertEngine(
                AlertsConfig(),
                store,
                MonitorMetrics(),
                interval_of=lambda _: 15.0,
                clock=lambda: T0 + 5,
            )
            await engine.start()
            try:
                await engine.sweep([task])
                (record,) = engine.firing()
            finally:
                await engine.stop()
        assert record.alertname == TASK_NOT_FOUND
        assert record.labels["severity"] == "warning"
        description = record.annotations["description"]
        assert "went from Pending to Ended" in description
        assert "error code ResourceNotFound" in description
        assert NOT_FOUND_HINT in description
