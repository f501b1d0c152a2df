"""The order of effects: compute, persist, apply in memory, announce. A failed store write
changes nothing and sends nothing; what is retried later applies once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monitor.alerts import TASK_EXITED
from monitor.models import Source, Status, Task, TaskKey, Transition
from monitor.simulator import (
    Simulator,
)
from tests.alerts_e2e_support import alerts_yaml, notices, register, task_of, webhook
from tests.conftest import DaemonFactory
from tests.daemon_support import (
    APP,
    CALLBACKS,
    LIVE,
    flaky_with_callbacks,
    post_callback,
    reach,
    stop_body,
)
from tests.support import FlakyStore, wait_for_async
from tests.test_receivers import Sink, serving


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """Daemons started in this test get a FlakyStore around their SQLite store."""
    return flaky_with_callbacks(monkeypatch)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


async def stored_task(store: FlakyStore, task_id: str) -> Task:
    [task] = [t for t in await store.inner.load_tasks() if t.task_id == task_id]
    return task


async def stored_transitions(store: FlakyStore, task_id: str) -> list[Transition]:
    return await store.inner.transitions(TaskKey(APP, task_id), newest_first=False)


class TestAFailedStoreWriteChangesNothing:
    async def test_a_poll_transition_not_stored_is_not_applied_alerted_or_lost(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)

        store.armed.add("record_transition")
        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def tried() -> bool:
            return store.failures.get("record_transition", 0) >= 2  # two polls, both refused

        await wait_for_async(tried, timeout=15, what="polls that cannot store the exit")
        assert task_of(running, task_id).status is Status.IN_PROGRESS
        assert (await stored_task(store, task_id)).status is Status.IN_PROGRESS
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED) == []
        assert [r for r in running.daemon.alerts.firing() if r.alertname == TASK_EXITED] == []

        store.armed.clear()
        await reach(running, task_id, Status.EXITED)
        assert (await stored_task(store, task_id)).status is Status.EXITED

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        await running.daemon.sweep_alerts()
        history = [(t.from_status, t.to_status) for t in await stored_transitions(store, task_id)]
        assert history == [
            (Status.PENDING, Status.IN_PROGRESS),
            (Status.IN_PROGRESS, Status.EXITED),
        ]
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1

    async def test_a_callback_exit_not_stored_is_a_503_and_its_redelivery_applies_once(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS + alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id, interval="60s")  # the callback, not a poll, sees it
        await reach(running, task_id, Status.IN_PROGRESS)
        assert simulator.exit_task(APP, task_id, leave_code=3)

        store.armed.add("record_transition")
        raw = stop_body(task_id)
        status, answer = await post_callback(running, raw)
        assert status == 503
        assert answer["error"]["code"] == "store_unavailable"
        assert task_of(running, task_id).status is Status.IN_PROGRESS
        assert (await stored_task(store, task_id)).status is Status.IN_PROGRESS
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED) == []

        store.armed.clear()
        assert await post_callback(running, raw) == (200, {"status": "ok"})  # TRTC's retry
        assert task_of(running, task_id).status is Status.EXITED

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        exits = [
            t for t in await stored_transitions(store, task_id) if t.to_status is Status.EXITED
        ]
        assert [t.source for t in exits] == [Source.CALLBACK]
        await running.daemon.sweep_alerts()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1

    async def test_a_removal_not_stored_is_a_503_and_resolves_nothing_until_it_is(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)
        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        url = f"{running.url}/api/v1/tasks/{APP}/{task_id}"

        store.armed.add("record_transition")
        async with running.session.delete(url, headers=running.auth()) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "store_unavailable"
        status = task_of(running, task_id).status
        assert status in (Status.EXITED, Status.ENDED)
        assert (await stored_task(store, task_id)).status is status
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED, task_id, "resolved") == []

        store.armed.clear()
        async with running.session.delete(url, headers=running.auth()) as r:
            assert r.status == 200
        assert task_of(running, task_id).status is Status.REMOVED
        removals = [
            t for t in await stored_transitions(store, task_id) if t.to_status is Status.REMOVED
        ]
        assert len(removals) == 1

        async def resolved() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "resolved"))

        await wait_for_async(resolved, timeout=15, what="the resolve")
        await running.daemon.sweep_alerts()
        assert len(notices(sink, TASK_EXITED, task_id, "resolved")) == 1

    async def test_an_alert_whose_state_cannot_be_saved_is_not_sent_until_it_is_then_once(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)

        store.armed.add("save_alerts")
        assert simulator.exit_task(APP, task_id, leave_code=3)
        await reach(running, task_id, Status.EXITED)  # the transition itself is stored

        async def decided() -> bool:
            return bool(store.failures.get("save_alerts"))

        await wait_for_async(decided, timeout=15, what="the alert decision")
        await running.daemon.sweep_alerts()  # its save fails again: still nothing sent
        await running.daemon.alerts.drain()
        assert notices(sink, TASK_EXITED) == []
        assert await store.inner.load_alerts() == []

        store.armed.clear()
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1
        [record] = await store.inner.load_alerts()
        assert record.alertname == TASK_EXITED
