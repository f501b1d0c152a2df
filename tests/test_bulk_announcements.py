"""Registrations in bulk are announced as one batch: subscribers of the batch hear it once,
per-task subscribers still hear every task, and the log has one line for the batch."""

from __future__ import annotations

from structlog.testing import capture_logs

from monitor.events import EventBus, TaskRegistered, TasksRegistered
from monitor.models import Status, Task
from monitor.simulator import Simulator
from tests.conftest import DaemonFactory
from tests.daemon_support import APP, LIVE, reach


def task(i: int) -> Task:
    return Task(
        sdk_app_id=APP,
        task_id=f"t-{i}",
        region="ap-guangzhou",
        account="default",
        registered_at=1_700_000_000.0,
        status=Status.PENDING,
        status_since=1_700_000_000.0,
    )


class TestTheBusExpandsBatches:
    async def test_a_batch_reaches_batch_subscribers_once_and_task_subscribers_per_task(
        self,
    ) -> None:
        bus = EventBus()
        batches: list[tuple[str, ...]] = []
        singles: list[str] = []
        bus.subscribe(TasksRegistered, lambda e: batches.append(tuple(t.task_id for t in e.tasks)))
        bus.subscribe(TaskRegistered, lambda e: singles.append(e.task.task_id))
        await bus.publish(TasksRegistered(tuple(task(i) for i in range(5))))
        assert batches == [("t-0", "t-1", "t-2", "t-3", "t-4")]
        assert singles == ["t-0", "t-1", "t-2", "t-3", "t-4"]

        await bus.publish(TaskRegistered(task(9)))
        assert batches[-1] == ("t-9",)
        assert singles[-1] == "t-9"

    async def test_a_failing_task_subscriber_misses_nothing_of_the_rest_of_the_batch(
        self,
    ) -> None:
        bus = EventBus()
        heard: list[str] = []

        def picky(event: TaskRegistered) -> None:
            if event.task.task_id == "t-1":
                raise RuntimeError("boom")
            heard.append(event.task.task_id)

        bus.subscribe(TaskRegistered, picky)
        with capture_logs() as logs:
            await bus.publish(TasksRegistered(tuple(task(i) for i in range(3))))
        assert heard == ["t-0", "t-2"]
        assert [e["event"] for e in logs] == ["event_handler_failed"]


class TestBulkRegistrationThroughTheDaemon:
    async def test_every_task_of_a_bulk_request_is_polled_counted_and_logged_once(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        ids = [simulator.add_task(APP, life=LIVE) for _ in range(40)]
        body = [{"sdk_app_id": APP, "task_id": i, "region": "ap-guangzhou"} for i in ids]
        with capture_logs() as logs:
            async with running.session.post(
                f"{running.url}/api/v1/tasks", json=body, headers=running.auth()
            ) as answer:
                assert answer.status in (200, 201), await answer.text()
        lines = [e for e in logs if e["event"] in ("tasks_registered", "task_registered")]
        assert len(lines) == 1
        assert lines[0]["event"] == "tasks_registered"
        assert lines[0]["count"] == 40
        # The scheduler heard each task: every one is polled without waiting an interval.
        for task_id in ids:
            await reach(running, task_id, Status.IN_PROGRESS)
        # The metrics count them all.
        async with running.session.get(f"{running.url}/metrics") as scrape:
            text = await scrape.text()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("trtc_recording_tasks{") and 'status="InProgress"' in line
        )
        assert counted == 40

    async def test_a_single_registration_keeps_its_own_line(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=LIVE)
        with capture_logs() as logs:
            answer = await running.register(APP, task_id)
            assert answer.status in (200, 201)
        lines = [e for e in logs if e["event"] in ("tasks_registered", "task_registered")]
        assert [(e["event"], e["task_id"]) for e in lines] == [("task_registered", task_id)]
        await reach(running, task_id, Status.IN_PROGRESS)
