"""End to end on loopback: the daemon polling the simulator, checked from both sides."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from monitor.models import REGIONS, Status, TaskKey
from monitor.simulator import Fault, FaultKind, Life, Simulator, SimulatorControl
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.support import free_port, wait_for_async

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
    async def test_all_regions_share_one_budget_that_is_never_exceeded(
        self, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        # The simulator runs as its own process, as TRTC would: its strict per-second counter
        # sees arrivals when they arrive, not when this test's busy event loop gets to them.
        port = free_port()
        with (
            (tmp_path / "sim.log").open("wb") as sim_log,
            subprocess.Popen(
                [sys.executable, "-m", "monitor", "simulate", "--listen", f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=sim_log,
            ) as sim,
        ):
            try:
                url = f"http://127.0.0.1:{port}"
                async with SimulatorControl(url) as control:

                    async def up() -> bool:
                        try:
                            await control.tasks()
                        except (aiohttp.ClientError, OSError):
                            return False
                        return True

                    await wait_for_async(up, timeout=20, what="the simulator process")
                    # 120 tasks at 1 s need 120 requests/s against a budget of 20/s. The
                    # guard is the room left for jitter between sending and arriving: on a
                    # machine this busy (two loops, the suite's other work) 10% is 100 ms.
                    running = await make_daemon(
                        text=daemon_config_text(url, tmp_path / "m.db").replace(
                            f'    endpoint: "{url}"', f'    endpoint: "{url}"\n    rate_guard: 10%'
                        )
                    )
                    assert running.daemon.budget.accounts["default"].limiter.guard == 0.1
                    for i in range(120):
                        task_id = await control.add_task(APP, idle=600)
                        answer = await running.register(APP, task_id, region=REGIONS[i % 5])
                        assert answer.status == 201
                    await asyncio.sleep(6.0)
                    stats = await control.stats(window=1.0)
            finally:
                sim.terminate()
                sim.wait(timeout=10)
        describe = stats["actions"][DESCRIBE]
        assert describe["arrivals"] > 20  # more than one second's worth was asked for
        assert describe["max_in_window"] <= 20
        assert not [c for c in describe["codes"] if c.startswith("RequestLimitExceeded")]
        text = await scrape(running)
        polled = {
            region
            for region in REGIONS
            if f'region="{region}"' in text.split("trtc_monitor_api_requests_total", 1)[1]
        }
        assert polled == set(REGIONS)  # one budget, every region drawing on it
        # The daemon knows it is over budget.
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
