"""The shared limiter against a real redis-server: several limiters play several replicas."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aredis

from monitor.ratelimit import LocalRateLimiter, RateLimiter
from monitor.ratelimit.factory import BucketKey, LimiterBackend, LimiterSettings, new_limiter
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.ratelimit.window import BudgetShape
from monitor.store.redis import RedisKeys, RedisStore
from tests.redis_server import RedisServer, running_redis

KEYS = RedisKeys("test-limiter:")
BUCKET = "default@trtc.tencentcloudapi.com"


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[aredis.Redis]]:
    """One connection pool per replica, as separate processes would have."""
    pools = [aredis.Redis.from_url(redis_server.url) for _ in range(3)]
    yield pools
    for pool in pools:
        await pool.aclose()


def shared(
    client: aredis.Redis, limit: int, window: float, grants: list[tuple[float, int]], name: int
) -> RedisRateLimiter:
    return RedisRateLimiter(
        client,
        KEYS.limiter(BUCKET),
        KEYS.limiter_sends(BUCKET),
        limit,
        window,
        key=BUCKET,
        retry=0.1,
        on_grant=lambda at: grants.append((at, name)),
    )


async def drain(limiter: RedisRateLimiter, count: int) -> None:
    """``count`` waiters at once: overload."""
    await asyncio.gather(*(limiter.acquire() for _ in range(count)))


class TestSharedBudget:
    async def test_replicas_together_keep_the_cap_and_even_spacing(
        self, clients: list[aredis.Redis]
    ) -> None:
        limit, window = 20, 0.5
        grants: list[tuple[float, int]] = []
        replicas = [shared(c, limit, window, grants, i) for i, c in enumerate(clients)]
        await asyncio.wait_for(asyncio.gather(*(drain(r, 30) for r in replicas)), timeout=30)

        times = sorted(at for at, _ in grants)
        assert len(times) == 90
        shape = BudgetShape.of(limit, window, guard=replicas[0].guard)
        # The cap: no window of window / (1 - guard) holds more than ``limit`` grants.
        for i in range(len(times) - limit):
            assert times[i + limit] - times[i] >= shape.cap_window, f"cap broken at grant {i}"
        # Even spacing: grants follow slots 1/rate apart; a grant may be late for its slot by
        # half a spacing at most before the schedule restarts from it.
        spacing = 1.0 / shape.configured_rate
        for i in range(len(times)):
            for j in range(i + 1, min(len(times), i + 2 * limit)):
                assert times[j] - times[i] >= (j - i) * spacing - spacing / 2 - 1e-6
        # Every replica was served: the budget is one, not three.
        assert {name for _, name in grants} == {0, 1, 2}

    async def test_a_waiter_cancelled_at_any_moment_ends(self, redis_server: RedisServer) -> None:
        # A stopping daemon cancels its dispatchers: a cancellation lost inside a Redis call
        # (as through asyncio.wait_for on Python 3.11) would make it wait forever. The
        # limiter runs on the store's connection pool, as the factory builds it.
        async with RedisStore(redis_server.url, "c:") as store:
            key = BucketKey("default", "host")
            limiter = new_limiter(
                key, LimiterSettings(1000, 0.001, 0.02), LimiterBackend.REDIS, store=store
            )
            await self._cancel_often(limiter)

    async def _cancel_often(self, limiter: RateLimiter) -> None:
        for i in range(300):

            async def busy() -> None:
                while True:
                    await limiter.acquire()

            task = asyncio.create_task(busy())
            await asyncio.sleep(0.0002 * (i % 11))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"cancellation lost at attempt {i}"
            assert task.cancelled()


class TestSharedBackoff:
    async def test_a_throttle_on_one_replica_slows_every_replica_once_per_window(
        self, clients: list[aredis.Redis]
    ) -> None:
        grants: list[tuple[float, int]] = []
        a, b = (shared(c, 20, 0.5, grants, i) for i, c in enumerate(clients[:2]))
        await a.acquire()
        await b.acquire()
        full = b.configured_rate
        assert b.effective_rate == pytest.approx(full)

        assert a.on_throttled() is True
        await a.settle()
        await b.acquire()
        assert b.effective_rate == pytest.approx(full * 0.8)
        # The same burst seen by another replica: no second cut within the window.
        assert b.on_throttled() is True
        await b.settle()
        await a.acquire()
        assert a.effective_rate == pytest.approx(full * 0.8)
        # And this replica does not even report a second throttle of the same burst.
        assert a.on_throttled() is False
        assert a.throttled_total == 2


class TestOutage:
    async def test_nothing_is_granted_while_redis_is_down_and_grants_resume_after(
        self, tmp_path: Path
    ) -> None:
        with running_redis(tmp_path / "r") as server:
            client = aredis.Redis.from_url(server.url)
            try:
                grants: list[tuple[float, int]] = []
                limiter = shared(client, 20, 1.0, grants, 0)
                await limiter.acquire()
                server.stop()
                waiting = asyncio.create_task(limiter.acquire())
                await asyncio.sleep(0.5)
                assert not waiting.done()
                assert limiter.available is False
                assert len(grants) == 1

                server.start()
                await asyncio.wait_for(waiting, timeout=10)
                assert limiter.available is True
                assert len(grants) == 2
            finally:
                await client.aclose()


class TestFactory:
    async def test_the_factory_shares_the_budget_through_a_redis_store(
        self, redis_server: RedisServer
    ) -> None:
        key = BucketKey("default", "trtc.tencentcloudapi.com")
        settings = LimiterSettings(20, 1.0, 0.02)
        async with RedisStore(redis_server.url, "f:") as store:
            limiter = new_limiter(key, settings, LimiterBackend.REDIS, store=store)
            assert isinstance(limiter, RedisRateLimiter)
            await limiter.acquire()
            client = aredis.Redis.from_url(redis_server.url)
            try:
                assert await client.exists(f"f:ratelimit:{key}:sends") == 1
            finally:
                await client.aclose()
            assert isinstance(
                new_limiter(key, settings, LimiterBackend.LOCAL, store=store), LocalRateLimiter
            )
        assert isinstance(new_limiter(key, settings), LocalRateLimiter)
        with pytest.raises(ValueError, match="Redis store"):
            new_limiter(key, settings, LimiterBackend.REDIS)


REPLICA = """
import asyncio
import sys

import redis.asyncio as aredis

from monitor.ratelimit.redis import RedisRateLimiter
from monitor.store.redis import RedisKeys


async def main() -> None:
    url, grants = sys.argv[1], int(sys.argv[2])
    keys = RedisKeys("test-limiter:")
    client = aredis.Redis.from_url(url)
    times = []
    limiter = RedisRateLimiter(
        client,
        keys.limiter("default@host"),
        keys.limiter_sends("default@host"),
        20,
        0.5,
        key="default@host",
        on_grant=times.append,
    )
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    await asyncio.gather(*(limiter.acquire() for _ in range(grants)))
    await client.aclose()
    print(" ".join(repr(t) for t in times), flush=True)


asyncio.run(main())
"""


class TestReplicaProcesses:
    async def test_three_processes_share_one_budget(
        self, redis_server: RedisServer, tmp_path: Path
    ) -> None:
        script = tmp_path / "replica.py"
        script.write_text(REPLICA)
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                redis_server.url,
                "25",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            for _ in range(3)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                ready = await asyncio.wait_for(child.stdout.readline(), timeout=30)
                assert ready.strip() == b"ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write(b"go\n")
                await child.stdin.drain()
            outputs = [
                await asyncio.wait_for(child.communicate(), timeout=60) for child in children
            ]
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
        per_process = [[float(t) for t in out.split()] for out, _ in outputs]
        assert [len(times) for times in per_process] == [25, 25, 25]
        times = sorted(t for ts in per_process for t in ts)
        shape = BudgetShape.of(20, 0.5)
        for i in range(len(times) - 20):
            assert times[i + 20] - times[i] >= shape.cap_window, f"cap broken at grant {i}"
        spacing = 1.0 / shape.configured_rate
        for i in range(len(times) - 1):
            assert times[i + 1] - times[i] >= spacing / 2 - 1e-6
