"""End to end on loopback: the daemon polling the simulator, checked from both sides."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from monitor.models import REGIONS, Status, TaskKey
from monitor.simulator import Fault, FaultKind, Life, Simulator
from tests.conftest import DaemonFactory, RunningDaemon
from tests.support import wait_for_async

APP = 1400000001
DESCRIBE = "DescribeCloudRecording"


async def task_json(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def scrape(running: RunningDaemon) -> str:
    async with running.session.get(f"{running.url}/metrics") as r:
        assert r.status == 200
        return await r.text()


class TestSharedBudget:
    async def test_all_regions_share_one_budget_that_is_used_fully_and_never_exceeded(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        # 120 tasks at 1 s need 120 requests/s against a budget of 20/s: heavy overload.
        running = await make_daemon(simulator.url)
        for i in range(120):
            task_id = simulator.add_task(APP, life=Life(idle=600))
            response = await running.register(APP, task_id, region=REGIONS[i % len(REGIONS)])
            assert response.status == 201
        started = time.monotonic()
        await asyncio.sleep(6.0)
        ended = time.monotonic()

        arrivals = [a for a in simulator.arrivals if a.action == DESCRIBE]
        assert {a.region for a in arrivals} == set(REGIONS)
        assert simulator.max_in_window(DESCRIBE, window=1.0) <= 20
        assert simulator.throttled == 0
        assert all(not a.code.startswith("RequestLimitExceeded") for a in arrivals)
        # Steady state (after the first second): the sending rate stays near the limit.
        steady = [a for a in arrivals if started + 1.0 <= a.mono <= ended]
        rate = len(steady) / (ended - started - 1.0)
        assert rate >= 0.85 * 20, f"sending rate {rate:.1f}/s under overload"
        # The daemon knows it is over budget.
        text = await scrape(running)
        assert 'trtc_monitor_poll_required_rate{account="default"} 120.0' in text


class TestLifecycle:
    async def test_a_scripted_life_shows_as_transitions_metrics_and_ends_in_ended(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=Life(idle=1.5, in_progress=2.0, exited=1.5))
        assert (await running.register(APP, task_id, region="ap-singapore")).status == 201

        async def ended() -> dict[str, Any] | None:
            body = await task_json(running, task_id)
            return body if body["status"] == "Ended" else None

        await wait_for_async(ended, timeout=20, what="task to reach Ended")
        async with running.session.get(
            f"{running.url}/api/v1/tasks/{APP}/{task_id}/transitions"
        ) as r:
            history = (await r.json())["transitions"]
        path = [(t["from"], t["to"]) for t in reversed(history)]
        assert path == [
            ("Pending", "Idle"),
            ("Idle", "InProgress"),
            ("InProgress", "Exited"),
            ("Exited", "Ended"),
        ]
        assert all(t["request_id"] for t in history)
        assert all(t["source"] == "poll" for t in history)
        assert history[0]["detail"] == {"code": "FailedOperation.TaskNotExist"}

        text = await scrape(running)
        labels = f'account="default",region="ap-singapore",sdk_app_id="{APP}"'
        assert (
            f'trtc_recording_task_status{{{labels},status="Ended",task_id="{task_id}"}} 1.0' in text
        )
        for before, after in path:
            assert (
                f'trtc_recording_transitions_total{{account="default",from_status="{before}",'
                f'region="ap-singapore",to_status="{after}"}} 1.0'
            ) in text

    async def test_an_ended_task_is_no_longer_polled(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=0.5, exited=0.5))
        await running.register(APP, task_id)
        await wait_for_async(
            lambda: _status_is(running, task_id, Status.ENDED), timeout=15, what="Ended"
        )
        count = sum(1 for a in simulator.arrivals if a.task_id == task_id)
        await asyncio.sleep(2.5)
        assert sum(1 for a in simulator.arrivals if a.task_id == task_id) == count


async def _status_is(running: RunningDaemon, task_id: str, status: Status) -> bool:
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    return task is not None and task.status is status


class TestFaults:
    async def test_transient_faults_never_change_a_status_and_are_counted_as_health(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=Life(idle=0.2, in_progress=None))
        await running.register(APP, task_id)
        await wait_for_async(
            lambda: _status_is(running, task_id, Status.IN_PROGRESS), timeout=10, what="InProgress"
        )
        kinds = [
            Fault(FaultKind.INTERNAL_ERROR, count=1),
            Fault(FaultKind.HTTP_ERROR, status=502, count=1),
            Fault(FaultKind.MALFORMED, body="not_json", count=1),
            Fault(FaultKind.DROP, count=1),
            Fault(FaultKind.TIMEOUT, hold=10.0, count=1),
        ]
        for fault in kinds:
            simulator.faults.add(fault)
        seen_codes: set[str] = set()

        async def all_faults_seen() -> bool:
            # Records are replaced on every change: read the current one each time.
            task = running.daemon.registry.get(TaskKey(APP, task_id))
            assert task is not None
            if task.last_error_code:
                seen_codes.add(task.last_error_code)
            assert task.status is Status.IN_PROGRESS  # never moved by a fault
            return len(seen_codes) >= len(kinds)

        await wait_for_async(all_faults_seen, timeout=30, interval=0.02, what="every fault")
        assert seen_codes >= {
            "InternalError",
            "Transport.HTTP502",
            "Transport.MalformedResponse",
            "Transport.ConnectionError",
            "Transport.Timeout",
        }
        history = await running.daemon.tracker.transitions(TaskKey(APP, task_id))
        assert [t.to_status for t in history] == [Status.IN_PROGRESS, Status.IDLE]
        await wait_for_async(
            lambda: _healthy(running, task_id), timeout=10, what="recovery after the faults"
        )


async def _healthy(running: RunningDaemon, task_id: str) -> bool:
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    return task is not None and task.consecutive_errors == 0 and task.last_success_at is not None
