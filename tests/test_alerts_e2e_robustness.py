"""Alerts end to end: a storm of transient faults changes no status and raises no alert."""

from __future__ import annotations

import asyncio

from monitor.alerts import TASK_ERROR, TASK_EXITED
from monitor.models import Status, TaskKey
from monitor.simulator import Fault, FaultKind, Life, Simulator
from tests.alerts_e2e_support import (
    APP,
    RECORDING,
    alerts_yaml,
    firing,
    notices,
    notification_count,
    polled_more,
    reach,
    register,
    task_of,
    webhook,
)
from tests.conftest import DaemonFactory
from tests.support import free_port, wait_for_async
from tests.test_receivers import Sink, serving

# ------------------------------------------------------------------------------ robustness


class TestRobustness:
    async def test_a_storm_of_transient_faults_changes_no_status_and_raises_no_exit_alert(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            ids = [simulator.add_task(APP, life=RECORDING) for _ in range(10)]
            for task_id in ids:
                await register(running, task_id)
            await reach(running, ids, Status.IN_PROGRESS)
            history = {t: await running.daemon.tracker.transitions(TaskKey(APP, t)) for t in ids}

            # The first rule that fires decides a request, so the later ones get higher odds:
            # each kind answers about 15% of the polls and a quarter still succeed.
            storm = [
                Fault(FaultKind.INTERNAL_ERROR, probability=0.15),
                Fault(FaultKind.TIMEOUT, probability=0.18, hold=3.0),
                Fault(FaultKind.DROP, probability=0.21),
                Fault(FaultKind.HTTP_ERROR, probability=0.27, status=502),
                Fault(FaultKind.MALFORMED, probability=0.375, body="no_response"),
            ]
            rules = [simulator.faults.add(f) for f in storm]

            async def every_kind_hit_often() -> bool:
                fired = simulator.faults.fired
                return all(fired.get(f.kind.value, 0) >= 2 for f in storm)

            await wait_for_async(every_kind_hit_often, timeout=30, what="the storm")
            for rule in rules:
                simulator.faults.remove(rule)

            async def all_healthy() -> bool:
                return all(task_of(running, t).consecutive_errors == 0 for t in ids)

            await wait_for_async(all_healthy, timeout=15, what="recovery after the storm")
            await running.daemon.sweep_alerts()
            await running.daemon.alerts.drain()

            for task_id in ids:
                assert task_of(running, task_id).status is Status.IN_PROGRESS
                assert (
                    await running.daemon.tracker.transitions(TaskKey(APP, task_id))
                    == history[task_id]
                )
            assert firing(running, TASK_EXITED) == []
            assert notices(sink, TASK_EXITED) == []
            # The storm was felt: the health alerts did their job meanwhile.
            assert notices(sink, TASK_ERROR, status="firing")

    async def test_unreachable_receivers_do_not_hold_up_polling_and_are_counted_as_failures(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        hung = Sink(hold=asyncio.Event())  # accepts, never answers
        async with serving(hung):
            receivers = [
                {"type": "alertmanager", "name": "am-down", "urls": [closed]},
                webhook(f"{closed}/hook", name="hook-down"),
                webhook(hung.url, name="hook-hung", timeout="60s"),
            ]
            running = await make_daemon(simulator.url, alerts_yaml(*receivers))
            steady = simulator.add_task(APP, life=RECORDING)
            leaving = simulator.add_task(APP, life=Life(idle=0.2, in_progress=0.5, exited=30))
            await register(running, steady)
            await register(running, leaving)

            async def failing() -> bool:
                return (
                    await notification_count(running, "am-down", "failure") >= 1
                    and await notification_count(running, "hook-down", "failure") >= 1
                    and bool(hung.requests)
                )

            await wait_for_async(failing, timeout=20, what="failed deliveries")
            [alert] = firing(running, TASK_EXITED, leaving)
            hung_worker = running.daemon.alerts.receivers["hook-hung"]
            assert alert.fingerprint in hung_worker.pending

            # While one delivery hangs and the others fail and retry, polling goes on.
            await polled_more(simulator, steady, 4, timeout=10)
            assert alert.fingerprint in hung_worker.pending
            assert len(hung.requests) == 1
            for name in ("am-down", "hook-down"):
                assert await notification_count(running, name, "failure") >= 2, name  # retried
                assert await notification_count(running, name, "success") == 0, name
            assert task_of(running, steady).consecutive_errors == 0
            assert [r.fingerprint for r in firing(running, TASK_EXITED)] == [alert.fingerprint]
