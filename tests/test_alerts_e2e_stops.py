"""Alerts end to end: stops the monitor expects (a task deregistered, a recording ended as
asked) raise no exit alert."""

from __future__ import annotations

import time

import pytest

from monitor.alerts import TASK_EXITED
from monitor.models import Status
from monitor.simulator import Simulator, sign
from monitor.simulator.callbacks import build_body
from tests.alerts_e2e_support import (
    APP,
    CALLBACK_KEY,
    LIVE,
    RECORDING,
    alerts_yaml,
    delete_task,
    firing,
    notices,
    polled_more,
    polls,
    reach,
    register,
    task_of,
    webhook,
)
from tests.conftest import DaemonFactory
from tests.support import wait_for_async
from tests.test_receivers import Sink, serving

# ------------------------------------------------------------------------------ expected stops


class TestExpectedStops:
    async def test_a_task_deregistered_before_it_stops_raises_no_exit_alert(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            quiet = simulator.add_task(APP, life=RECORDING)
            control = simulator.add_task(APP, life=RECORDING)
            await register(running, quiet)
            await register(running, control)
            await reach(running, (quiet, control), Status.IN_PROGRESS)

            await delete_task(running, quiet)
            assert simulator.exit_task(APP, quiet)
            assert simulator.exit_task(APP, control)

            # The same stop of a task still registered is alerted and delivered...
            async def control_notified() -> bool:
                return bool(notices(sink, TASK_EXITED, control, "firing"))

            await wait_for_async(control_notified, timeout=15, what="the control's exit")
            # ...and after several more polls and a sweep, the deregistered one still is not.
            await polled_more(simulator, control, 3)
            await running.daemon.sweep_alerts()
            await running.daemon.alerts.drain()
            assert task_of(running, quiet).status is Status.REMOVED
            assert [r.labels["task_id"] for r in firing(running, TASK_EXITED)] == [control]
            assert notices(sink, task_id=quiet) == []

    async def test_a_302_with_leave_code_3_alerts_at_once_and_one_with_leave_code_0_never(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
        extra = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n" + alerts_yaml()
        running = await make_daemon(simulator.url, extra)
        kicked = simulator.add_task(APP, life=LIVE)
        stopped = simulator.add_task(APP, life=LIVE)
        for task_id in (kicked, stopped):
            # Polled once now, then rarely: the callback, not a poll, must see the stop.
            await register(running, task_id, interval="60s")
        await reach(running, (kicked, stopped), Status.IN_PROGRESS)

        async def recorder_left(task_id: str, leave_code: int) -> None:
            assert simulator.exit_task(APP, task_id, leave_code=leave_code)
            now = time.time()
            raw = build_body(
                302,
                room_id="room-1",
                user_id="recorder_1",
                task_id=task_id,
                payload={"LeaveCode": leave_code},
                event_wall=now,
                callback_wall=now,
            )
            headers = {
                "Content-Type": "application/json",
                "Sign": sign(CALLBACK_KEY, raw),
                "SdkAppId": str(APP),
            }
            async with running.session.post(
                f"{running.url}/callbacks/trtc", data=raw, headers=headers
            ) as r:
                assert r.status == 200

        await recorder_left(kicked, 3)
        # Firing as soon as the callback is acknowledged: no poll or sweep in between.
        [alert] = firing(running, TASK_EXITED, kicked)
        assert "leave code 3" in alert.annotations["description"]
        assert "(seen by callback)" in alert.annotations["description"]

        before = polls(simulator, stopped)
        posted_at = time.time()
        await recorder_left(stopped, 0)
        assert task_of(running, stopped).status is Status.EXITED

        async def confirmed_by_a_poll() -> bool:
            last = task_of(running, stopped).last_success_at
            return polls(simulator, stopped) > before and last is not None and last > posted_at

        await wait_for_async(confirmed_by_a_poll, timeout=15, what="the confirming poll")
        await running.daemon.sweep_alerts()
        assert task_of(running, stopped).status is Status.EXITED
        assert firing(running, TASK_EXITED, stopped) == []
        assert [r.labels["task_id"] for r in firing(running, TASK_EXITED)] == [kicked]
