"""Two replicas' coordinators on a real redis-server: split, takeover, announcements."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aredis

from monitor.cluster.coordinator import ClusterCoordinator, last_observed, replica_id_of
from monitor.cluster.feed import Change
from monitor.config import ClusterConfig
from monitor.models import Status, Task, TaskKey
from monitor.store.redis import RedisKeys
from tests.redis_server import RedisServer

KEYS = RedisKeys("test-coord:")
CONFIG = ClusterConfig(heartbeat=0.1, member_timeout=0.4)
NOW = 1_000_000.0
INTERVAL = 15.0


def fleet() -> list[Task]:
    tasks = []
    for i in range(200):
        task = Task(1400000001, f"t-{i:03d}", "ap-guangzhou", "default")
        # Observed between 30 s and 0 s ago: some overdue at a 15 s interval, some not.
        task.last_success_at = NOW - 30.0 + (i * 7 % 200) * 0.15
        tasks.append(task)
    tasks[0].last_success_at = None  # never observed: due now
    tasks[1].status = Status.ENDED  # final: nobody polls it
    return tasks


@dataclass
class Replica:
    coordinator: ClusterCoordinator
    gained: list[list[tuple[TaskKey, float]]] = field(default_factory=list)
    lost: list[list[TaskKey]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Callable[[str], Replica]]:
    tasks = fleet()
    pools: list[aredis.Redis] = []
    made: list[Replica] = []

    def make(name: str) -> Replica:
        pool = aredis.Redis.from_url(redis_server.url)
        pools.append(pool)
        replica: Replica

        async def changed(change: Change) -> None:
            replica.changes.append(change)

        replica = Replica(
            ClusterCoordinator(
                pool,
                KEYS,
                CONFIG,
                tasks=lambda: tasks,
                interval_of=lambda task: INTERVAL,
                on_gained=lambda keys: replica.gained.append(keys),
                on_lost=lambda keys: replica.lost.append(keys),
                on_change=changed,
                replica_id=name,
                clock=lambda: NOW,
                retry=0.1,
            )
        )
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.coordinator.stop()
    for pool in pools:
        await pool.aclose()


def live_keys() -> set[TaskKey]:
    return {t.key for t in fleet() if not t.final}


class TestSplitAndTakeover:
    async def test_two_replicas_split_the_live_tasks_and_one_takes_over_a_dead_one(
        self, replicas: Callable[[str], Replica]
    ) -> None:
        a = replicas("a")
        await a.coordinator.start()
        assert {k for k, _ in a.gained[0]} == live_keys()
        assert a.coordinator.leads

        b = replicas("b")
        await b.coordinator.start()
        await eventually(lambda: a.coordinator.members == ("a", "b") and bool(a.lost))
        mine_a, mine_b = set(a.coordinator.owned()), set(b.coordinator.owned())
        assert mine_a.isdisjoint(mine_b)
        assert mine_a | mine_b == live_keys()
        assert {k for k, _ in b.gained[0]} == mine_b == set(a.lost[0])
        assert a.coordinator.leads != b.coordinator.leads

        await b.coordinator.stop(leave=False)  # as kill -9: a must wait for the timeout
        await eventually(lambda: len(a.gained) == 2, timeout=CONFIG.member_timeout + 5)
        taken = a.gained[1]
        assert {k for k, _ in taken} == mine_b
        # Most overdue first, each due one interval after its last observation.
        dues = [due_in for _, due_in in taken]
        assert dues == sorted(dues)
        tasks = {t.key: t for t in fleet()}
        for key, due_in in taken:
            seen = last_observed(tasks[key])
            expected = 0.0 if seen is None else max(0.0, seen + INTERVAL - NOW)
            assert due_in == pytest.approx(expected)
        assert dues[0] == 0.0
        assert dues[-1] > 0.0
        assert set(a.coordinator.owned()) == live_keys()

    async def test_announcements_reach_the_other_replica(
        self, replicas: Callable[[str], Replica]
    ) -> None:
        a, b = replicas("a"), replicas("b")
        await a.coordinator.start()
        await b.coordinator.start()
        key = TaskKey(1400000001, "t-005")
        await a.coordinator.announce("registered", key)
        await eventually(lambda: bool(b.changes))
        assert b.changes == [Change("registered", "a", key)]
        assert a.changes == []


def test_the_replica_id_comes_from_the_config_or_the_host_and_process() -> None:
    assert replica_id_of(ClusterConfig(replica_id="monitor-0")) == "monitor-0"
    assert replica_id_of(ClusterConfig()).rsplit("-", 1)[1].isdigit()
