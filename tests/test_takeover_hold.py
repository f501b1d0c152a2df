"""Takeover over budget: the survivors spend the shared budget on a dead replica's tasks first.

A survivor that has polled its own share of the dead replica's tasks holds its requests
back until the whole set could have been polled at the account's rate, so the survivor the hash
gave more of them gets the slots (monitor/cluster/takeover.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aredis

from monitor.cluster.coordinator import ClusterCoordinator
from monitor.cluster.feed import Change
from monitor.cluster.hashing import handover, owner
from monitor.cluster.takeover import HeldLimiter, TakeoverClaims, TakeoverHold, max_rate
from monitor.config import ClusterConfig
from monitor.models import Status, Task, TaskKey
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.scheduler import PollScheduler
from monitor.store.redis import RedisKeys
from tests.redis_server import RedisServer

KEYS = RedisKeys("test-hold:")
INTERVAL = 15.0
NOW = 1_000_000.0


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> TaskKey:
    return TaskKey(1400000001, f"t-{i:03d}")


class TestOrphans:
    def test_the_keys_of_a_member_that_left_are_orphaned_whoever_takes_them(self) -> None:
        keys = [f"k{i}" for i in range(300)]
        before, after = ("a", "b", "c"), ("a", "b")
        theirs = {k for k in keys if owner(k, before) == "c"}
        for me in after:
            change = handover(me, keys, before, after)
            assert set(change.orphaned) == theirs
            assert set(change.gained) == {k for k in theirs if owner(k, after) == me}
            assert change.lost == ()

    def test_a_join_orphans_nothing(self) -> None:
        keys = [f"k{i}" for i in range(300)]
        change = handover("a", keys, ("a", "b"), ("a", "b", "c"))
        assert change.orphaned == ()
        assert change.lost  # the newcomer takes some of a's: moved, not orphaned


class TestTakeoverHold:
    def test_holds_once_its_own_share_is_polled_until_the_whole_set_could_be(self) -> None:
        clock = Clock()
        hold = TakeoverHold(clock=clock)
        mine = [key(i) for i in range(3)]
        assert hold.begin("default", orphaned=10, mine=mine, rate=2.0)
        assert hold.wait("default") == 0.0  # its own taken tasks go first
        for k in mine[:2]:
            hold.polled("default", k)
        assert hold.wait("default") == 0.0
        clock.now += 1.0
        hold.polled("default", mine[2])
        # 10 tasks at 2/s: the set could be done 5 s after the takeover, 4 s from now.
        assert hold.wait("default") == pytest.approx(4.0)
        assert hold.wait("other") == 0.0  # other accounts' budgets are not held
        clock.now += 4.0
        assert hold.wait("default") == 0.0
        assert not hold.pending("default")

    def test_a_survivor_with_all_of_them_never_holds(self) -> None:
        hold = TakeoverHold(clock=Clock())
        mine = [key(i) for i in range(5)]
        assert not hold.begin("default", orphaned=5, mine=mine, rate=2.0)
        for k in mine:
            hold.polled("default", k)
        assert hold.wait("default") == 0.0

    def test_one_with_none_of_them_holds_from_the_start_and_a_new_change_ends_it(self) -> None:
        hold = TakeoverHold(clock=Clock())
        assert hold.begin("default", orphaned=8, mine=[], rate=4.0)
        assert hold.wait("default") == pytest.approx(2.0)
        hold.end()
        assert hold.wait("default") == 0.0


class TestOrphansReported:
    async def test_every_survivor_is_told_the_same_count_of_the_dead_ones_tasks(
        self, redis_server: RedisServer
    ) -> None:
        config = ClusterConfig(heartbeat=0.1, member_timeout=0.4)
        tasks = []
        for i in range(240):
            task = Task(1400000001, f"t-{i:03d}", "ap-guangzhou", "acct-a" if i % 3 else "acct-b")
            if i % 10 == 0:
                task.status = Status.ENDED  # final: nobody polls it, nobody takes it over
            tasks.append(task)
        pools = [aredis.Redis.from_url(redis_server.url) for _ in range(3)]
        told: dict[str, list[dict[str, int]]] = {name: [] for name in "abc"}
        coordinators: list[ClusterCoordinator] = []

        async def ignore(change: Change) -> None:
            return None

        for name, pool in zip("abc", pools, strict=True):
            coordinators.append(
                ClusterCoordinator(
                    pool,
                    KEYS,
                    config,
                    tasks=lambda: tasks,
                    interval_of=lambda task: INTERVAL,
                    on_gained=lambda keys: None,
                    on_lost=lambda keys: None,
                    on_change=ignore,
                    on_orphans=told[name].append,
                    replica_id=name,
                    clock=lambda: NOW,
                    retry=0.1,
                )
            )
        a, b, c = coordinators
        try:
            for coordinator in coordinators:
                await coordinator.start()
            await eventually(lambda: all(x.members == ("a", "b", "c") for x in coordinators))
            dead = {t.key for t in tasks if c.ownership.owner_of(t.key) == "c"}
            await c.stop(leave=False)  # as kill -9
            await eventually(lambda: a.members == b.members == ("a", "b"))
            await eventually(lambda: bool(told["a"]) and bool(told["b"]))
        finally:
            for coordinator in (a, b):
                await coordinator.stop()
            for pool in pools:
                await pool.aclose()
        expected: dict[str, int] = {}
        for t in tasks:
            if t.key in dead and not t.final:
                expected[t.account] = expected.get(t.account, 0) + 1
        assert set(expected) == {"acct-a", "acct-b"}
        assert told["a"][-1] == told["b"][-1] == expected
        # The joins before orphaned nothing.
        assert all(len(seen) == 1 for seen in told.values() if seen)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    pool = aredis.Redis.from_url(redis_server.url)
    yield pool
    await pool.aclose()


class TestClaims:
    async def test_a_claim_is_seen_by_the_others_until_released_or_expired(
        self, client: aredis.Redis
    ) -> None:
        a = TakeoverClaims(client, KEYS, "a", ttl=0.5)
        b = TakeoverClaims(client, KEYS, "b", ttl=0.5)
        assert await a.claim("default") == 0
        assert await b.others("default") == 1
        assert await a.others("default") == 0  # its own claim is not another's
        assert await client.exists(KEYS.takeover_claims("default")) == 1
        assert await b.others("other-account") == 0
        assert await a.release("default") == 0
        assert await b.others("default") == 0
        await a.claim("default")  # and a replica that dies leaves one that expires
        deadline = asyncio.get_running_loop().time() + 10.0
        while await b.others("default"):
            assert asyncio.get_running_loop().time() < deadline, "the claim never expired"
            await asyncio.sleep(0.05)


class TestTwoSurvivorsShareOneBudget:
    async def test_the_one_done_with_its_share_gives_its_slots_to_the_other(
        self, client: aredis.Redis
    ) -> None:
        """Two survivors over budget on one shared budget: A took 12 of the dead replica's
        tasks, B 3. Without the hold they take turns (the limiter serves its waiters in order,
        as the replicas of bench/ha.py share it about evenly), so B polls its own backlog while
        A still has 9 of them; with it B waits while A's claim stands, so its backlog comes
        after A's last."""
        polled: list[tuple[str, str]] = []
        shared = RedisRateLimiter(
            client, KEYS.limiter("default"), KEYS.limiter_sends("default"), 10, 1.0, key="d"
        )
        holds = {name: TakeoverHold(TakeoverClaims(client, KEYS, name)) for name in "AB"}

        def survivor(name: str) -> PollScheduler[str]:
            async def poll(k: str) -> None:
                polled.append((name, k))
                holds[name].polled("default", key_of(k))

            return PollScheduler(poll, max_in_flight=1, jitter=0.0)

        a, b = survivor("A"), survivor("B")
        for name, scheduler in (("A", a), ("B", b)):
            scheduler.add_bucket("default", HeldLimiter(shared, "default", holds[name]))
        # Both over budget: a backlog of their own, overdue by several seconds.
        a.add_many((f"a-own-{i}", "default", INTERVAL, -5.0 + i * 0.01) for i in range(60))
        b.add_many((f"b-own-{i}", "default", INTERVAL, -5.0 + i * 0.01) for i in range(60))
        taken = {
            "A": [f"dead-{i:02d}" for i in range(12)],
            "B": [f"dead-{i:02d}" for i in (12, 13, 14)],
        }
        rate = max_rate(shared)
        claims = []
        for name, scheduler in (("A", a), ("B", b)):
            hold = holds[name]
            assert hold.begin(
                "default", orphaned=15, mine=[key_of(k) for k in taken[name]], rate=rate
            )
            scheduler.take_over((k, "default", INTERVAL, -40.0) for k in taken[name])
            claims.append(asyncio.create_task(hold.keep_claim("default")))
        a.start()
        b.start()
        try:
            await eventually(lambda: all(("A", k) in polled for k in taken["A"]), timeout=30.0)
            await eventually(lambda: any(who == "B" and "own" in k for who, k in polled))
        finally:
            await a.stop()
            await b.stop()
            for claim in claims:
                await claim  # both shares polled: the claims end by themselves
        last_taken = max(polled.index(("A", k)) for k in taken["A"])
        b_own_before = [k for who, k in polled[:last_taken] if who == "B" and "own" in k]
        # B polled its three, then held while A's claim stood: one own poll at most, granted
        # while its last taken poll was still in flight; against about nine without the hold.
        assert len(b_own_before) <= 1, b_own_before
        # B's share of the dead one's tasks went ahead of its own backlog.
        b_polls = [k for who, k in polled if who == "B"]
        assert sorted(b_polls[:3]) == taken["B"]
        # Both claims are gone.
        assert await TakeoverClaims(client, KEYS, "x").others("default") == 0


def key_of(name: str) -> TaskKey:
    return TaskKey(1400000001, name)
