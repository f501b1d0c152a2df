"""Callbacks sent by the simulator to a daemon polling it: a 301 registers a task that is
then polled, and what follows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from monitor.models import Source, Status, TaskKey
from monitor.simulator import CallbackSettings, Life, Simulator
from tests.callbacks_support import (
    APP,
    DESCRIBE,
    EXTRA,
    KEY,
    PATH,
    callback_counts,
    callback_transitions,
    task_api,
)
from tests.conftest import DaemonFactory, RunningDaemon
from tests.support import free_port, wait_for_async

# ------------------------------------------------------------------------------ with the simulator

SimPair = tuple[Simulator, RunningDaemon]
PairFactory = Callable[[frozenset[int]], Awaitable[SimPair]]


@pytest.fixture
async def sim_pair(
    make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PairFactory]:
    """A daemon polling a simulator that sends it signed callbacks.

    Each needs the other's address: the simulator's port is chosen first, the daemon started
    against it, and the simulator then started on that port aiming its callbacks at the daemon.
    """
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    sims: list[Simulator] = []

    async def factory(events: frozenset[int]) -> SimPair:
        port = free_port()
        running = await make_daemon(f"http://127.0.0.1:{port}", EXTRA)
        settings = CallbackSettings(url=f"{running.url}{PATH}", key=KEY, events=events)
        sim = Simulator(seed=7, callback=settings)
        sims.append(sim)
        await sim.start(port=port)
        return sim, running

    try:
        yield factory
    finally:
        for sim in sims:
            await sim.stop()


def describes(sim: Simulator, task_id: str) -> list[float]:
    return [a.wall for a in sim.arrivals if a.action == DESCRIBE and a.task_id == task_id]


class TestWithTheSimulator:
    async def test_a_301_from_the_simulator_registers_a_task_that_is_then_polled(
        self, sim_pair: PairFactory
    ) -> None:
        sim, running = await sim_pair(frozenset({301, 302}))
        task_id = sim.add_task(APP, life=Life(idle=60.0), room_id=8489, user_id="rec_1")
        key = TaskKey(APP, task_id)

        async def polled() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is not Status.PENDING

        await wait_for_async(polled, timeout=10, what="the task to be registered and polled")
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.status is Status.IDLE
        assert task.source is Source.CALLBACK
        assert task.labels == {"room": "8489", "user": "rec_1"}
        assert describes(sim, task_id)
        assert sim.callback_stats["delivered"] == 1
        assert (await callback_counts(running))[("301", "accepted")] == 1

    @pytest.mark.parametrize("leave_code", [3, 0])
    async def test_a_302_records_the_exit_at_once_and_a_confirming_poll_follows(
        self, sim_pair: PairFactory, leave_code: int
    ) -> None:
        # Only 302 is sent, so the task keeps the 60 s interval it is registered with here.
        sim, running = await sim_pair(frozenset({302}))
        task_id = sim.add_task(APP, life=Life(idle=600.0, exited=30.0))
        assert (await running.register(APP, task_id, interval="60s")).status == 201
        key = TaskKey(APP, task_id)

        async def observed() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is Status.IDLE

        await wait_for_async(observed, timeout=10, what="the first poll")
        assert len(describes(sim, task_id)) == 1
        assert sim.exit_task(APP, task_id, leave_code=leave_code)

        async def exited() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is Status.EXITED

        await wait_for_async(exited, timeout=10, what="the callback's exit")
        [exit_] = await callback_transitions(running, task_id)
        assert (exit_.from_status, exit_.to_status) == (Status.IDLE, Status.EXITED)
        assert exit_.detail["leave_code"] == leave_code
        assert isinstance(exit_.detail["event_ts"], int)

        async def confirmed() -> list[float] | None:
            walls = describes(sim, task_id)
            return walls if len(walls) >= 2 else None

        walls = await wait_for_async(confirmed, timeout=10, what="the confirming poll")
        # The exit was known from the callback before the simulator was polled again; the
        # next regular poll was a minute away.
        assert exit_.at <= walls[1]
        assert walls[1] - walls[0] < 60.0
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.status is Status.EXITED  # the poll confirms: no further transition
        assert task.extra["leave_code"] == leave_code
        api = await task_api(running, task_id)
        assert api["recent_transitions"][0]["source"] == "callback"
        assert api["recent_transitions"][0]["detail"]["leave_code"] == leave_code
