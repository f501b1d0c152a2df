"""Alerts end to end: each task and monitor condition fires on a daemon polling the
simulator, notifies a webhook in the test, and resolves."""

from __future__ import annotations

import json
import re

import pytest

from monitor.alerts import (
    MONITOR_AUTH_FAILURE,
    MONITOR_OVER_BUDGET,
    TASK_ERROR,
    TASK_EXITED,
    TASK_IDLE,
    TASK_STALE,
)
from monitor.models import Status
from monitor.simulator import DEFAULT_SECRET_ID, Fault, FaultKind, Life, Simulator
from monitor.store import AlertRecord
from tests.alerts_e2e_support import (
    APP,
    RECORDING,
    WRONG_SECRET_KEY,
    alerts_yaml,
    api_alerts,
    delete_task,
    firing,
    notices,
    reach,
    register,
    samples,
    scrape,
    task_of,
    webhook,
)
from tests.conftest import DaemonFactory
from tests.support import wait_for_async
from tests.test_receivers import Sink, serving

# ------------------------------------------------------------------------------ task conditions


class TestTaskConditions:
    async def test_the_error_alert_fires_at_the_configured_failure_count_and_resolves_on_success(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            task_id = simulator.add_task(APP, life=RECORDING)
            await register(running, task_id)
            await reach(running, [task_id], Status.IN_PROGRESS)
            fault = simulator.faults.add(
                Fault(FaultKind.INTERNAL_ERROR, task_ids=frozenset({task_id}))
            )

            async def fired() -> list[AlertRecord] | None:
                return firing(running, TASK_ERROR, task_id) or None

            [alert] = await wait_for_async(fired, timeout=15, what="the error alert")
            # Decided by the second failed poll, not the first and not later.
            assert "2 failed polls in a row" in alert.annotations["summary"]
            assert "InternalError" in alert.annotations["description"]
            assert alert.labels["severity"] == "warning"
            failed = [a for a in simulator.arrivals if a.task_id == task_id and a.code]
            assert len(failed) >= 2
            assert {a.code for a in failed} == {"InternalError"}

            simulator.faults.remove(fault)

            async def resolved() -> bool:
                return not firing(running, TASK_ERROR, task_id)

            await wait_for_async(resolved, timeout=15, what="the error alert to resolve")
            assert task_of(running, task_id).consecutive_errors == 0
            assert task_of(running, task_id).status is Status.IN_PROGRESS

            async def resolve_delivered() -> bool:
                return bool(notices(sink, TASK_ERROR, task_id, "resolved"))

            await wait_for_async(resolve_delivered, timeout=15, what="the resolve notification")
            assert len(notices(sink, TASK_ERROR, task_id, "firing")) == 1

    async def test_the_stale_alert_fires_when_polls_time_out_and_resolves_on_a_good_poll(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=RECORDING)
        await register(running, task_id)
        await reach(running, [task_id], Status.IN_PROGRESS)
        task = task_of(running, task_id)
        # Held past the daemon's 2 s request timeout: every poll times out.
        fault = simulator.faults.add(
            Fault(FaultKind.TIMEOUT, hold=5.0, task_ids=frozenset({task_id}))
        )

        async def fired() -> list[AlertRecord] | None:
            return firing(running, TASK_STALE, task_id) or None

        [alert] = await wait_for_async(fired, timeout=20, what="the stale alert")
        task = task_of(running, task_id)  # records are replaced on every change, not edited
        last_success = task.last_success_at
        assert last_success is not None
        assert alert.starts_at - last_success > 3.0  # not before stale.after
        assert "stale after 3s" in alert.annotations["description"]
        assert task.last_error_code == "Transport.Timeout"
        assert task.status is Status.IN_PROGRESS

        simulator.faults.remove(fault)

        async def resolved() -> bool:
            return not firing(running, TASK_STALE, task_id)

        await wait_for_async(resolved, timeout=15, what="the stale alert to resolve")
        task = task_of(running, task_id)
        assert task.last_success_at is not None
        assert task.last_success_at > last_success

    async def test_the_idle_alert_fires_for_a_hung_task_and_resolves_when_it_leaves_idle(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=Life(idle=0.2, hang_idle=True, exited=30))
        await register(running, task_id, labels={"room": "r-7"})
        await reach(running, [task_id], Status.IDLE)
        task = task_of(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, TASK_IDLE, task_id) or None

        [alert] = await wait_for_async(fired, timeout=15, what="the idle alert")
        assert alert.starts_at - task.status_since > 2.0  # not before idle.after
        assert alert.labels["room"] == "r-7"
        assert alert.labels["severity"] == "warning"

        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def moved_on() -> bool:
            return not firing(running, TASK_IDLE, task_id) and bool(
                firing(running, TASK_EXITED, task_id)
            )

        await wait_for_async(moved_on, timeout=15, what="idle resolved, exit firing")
        assert task_of(running, task_id).status is Status.EXITED


# ------------------------------------------------------------------------------ monitor alerts


class TestMonitorConditions:
    async def test_rejected_credentials_fire_an_account_alert_until_calls_succeed(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # make_daemon set the right key when the fixture was set up; the factory reads it now.
        monkeypatch.setenv("TEST_SECRET_KEY", WRONG_SECRET_KEY)
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=RECORDING)
        await register(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, MONITOR_AUTH_FAILURE) or None

        [alert] = await wait_for_async(fired, timeout=20, what="the auth alert")
        assert alert.labels == {
            "alertname": MONITOR_AUTH_FAILURE,
            "severity": "critical",
            "account": "default",
        }
        assert alert.task is None
        assert "account default" in alert.annotations["summary"]
        assert task_of(running, task_id).status is Status.PENDING  # never observed
        shown = json.dumps(await api_alerts(running)) + await scrape(running.session, running.url)
        assert WRONG_SECRET_KEY not in shown
        assert WRONG_SECRET_KEY not in repr(running.daemon.alerts.firing())

        # The account's key is changed to the one the daemon holds: calls succeed again, and
        # the next sweep (run here rather than waited for) resolves the alert.
        simulator.credentials[DEFAULT_SECRET_ID] = WRONG_SECRET_KEY
        await reach(running, [task_id], Status.IN_PROGRESS)
        await running.daemon.sweep_alerts()
        assert firing(running, MONITOR_AUTH_FAILURE) == []

    async def test_intervals_needing_more_than_the_budget_fire_over_budget_until_they_fit(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        ids = [simulator.add_task(APP, life=RECORDING) for _ in range(30)]
        for task_id in ids:
            await register(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, MONITOR_OVER_BUDGET) or None

        # 30 tasks every second against 20 requests/s less the 2% guard.
        [alert] = await wait_for_async(fired, timeout=20, what="the over-budget alert")
        assert alert.labels == {
            "alertname": MONITOR_OVER_BUDGET,
            "severity": "warning",
            "account": "default",
        }
        needs = re.search(r"needs ([0-9.]+) req/s", alert.annotations["summary"])
        assert needs is not None
        assert float(needs[1]) > 19.6
        assert "(19.6 req/s)" in alert.annotations["summary"]
        required = samples(
            await scrape(running.session, running.url), "trtc_monitor_poll_required_rate"
        )
        assert required[(("account", "default"),)] == 30.0

        # Half of them deregistered: 15 requests/s fit. The next sweep (run here rather than
        # waited for) resolves the alert.
        for task_id in ids[:15]:
            await delete_task(running, task_id)
        await running.daemon.sweep_alerts()
        assert firing(running, MONITOR_OVER_BUDGET) == []
