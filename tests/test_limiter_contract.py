"""One suite for the limiter seam, run against both backends: what the scheduler and the poll
step may rely on whichever budget a daemon was given.

Each backend is built as the factory builds it; grant times are read from the budget itself
(the local core's log, or Redis's clock as the shared limiter reports it), so the cap is
checked on the times the budget counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Protocol

import pytest
import redis.asyncio as aredis

from monitor.ratelimit import LocalRateLimiter, WindowBudget
from monitor.ratelimit.base import QueuedLimiter
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.ratelimit.window import BudgetShape
from monitor.store.redis import RedisKeys
from tests.redis_server import RedisServer


class _Recording(WindowBudget):
    """The local core, keeping every grant time."""

    def __init__(self, limit: int, window: float, grants: list[float], guard: float) -> None:
        super().__init__(limit, window, guard=guard)
        self._grants = grants

    def record(self, now: float) -> None:
        super().record(now)
        self._grants.append(now)


@dataclass
class Built:
    limiter: QueuedLimiter
    grants: list[float] = field(default_factory=list)

    async def settled(self) -> None:
        """Throttle reports the backend sends on in the background have arrived."""
        if isinstance(self.limiter, RedisRateLimiter):
            await self.limiter.settle()


class Make(Protocol):
    def __call__(
        self, limit: int, window: float, *, key: str = ..., guard: float = ...
    ) -> Awaitable[Built]: ...


@pytest.fixture(params=["local", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    if request.param == "local":

        async def local(limit: int, window: float, *, key: str = "", guard: float = 0.02) -> Built:
            grants: list[float] = []
            budget = _Recording(limit, window, grants, guard)
            return Built(LocalRateLimiter(limit, window, key=key, budget=budget), grants)

        yield local
        return

    server: RedisServer = request.getfixturevalue("redis_server")
    client = aredis.Redis.from_url(server.url)
    made = 0

    async def shared(limit: int, window: float, *, key: str = "", guard: float = 0.02) -> Built:
        nonlocal made
        made += 1
        keys = RedisKeys(f"contract-{made}:")
        grants: list[float] = []
        limiter = RedisRateLimiter(
            client,
            keys.limiter(key),
            keys.limiter_sends(key),
            limit,
            window,
            key=key,
            guard=guard,
            retry=0.1,
            on_grant=grants.append,
        )
        return Built(limiter, grants)

    try:
        yield shared
    finally:
        await client.aclose()


class TestFigures:
    async def test_it_reports_the_figures_it_was_sized_by(self, make: Make) -> None:
        built = await make(20, 1.0, key="acct@host", guard=0.0)
        limiter = built.limiter
        assert (limiter.key, limiter.limit, limiter.window, limiter.guard) == (
            "acct@host",
            20,
            1.0,
            0.0,
        )
        assert limiter.configured_rate == pytest.approx(20.0)
        assert limiter.effective_rate == pytest.approx(20.0)
        assert (limiter.waiting, limiter.throttled_total) == (0, 0)
        assert "acct@host" in repr(limiter)
        assert type(limiter).__name__ in repr(limiter)


class TestWaiting:
    async def test_concurrent_acquires_keep_the_cap_and_the_spacing(self, make: Make) -> None:
        limit, window = 10, 0.2
        built = await make(limit, window)
        waited = await asyncio.wait_for(
            asyncio.gather(*(built.limiter.acquire() for _ in range(35))), timeout=30
        )
        times = sorted(built.grants)
        assert len(times) == 35
        shape = BudgetShape.of(limit, window, guard=built.limiter.guard)
        for i in range(len(times) - limit):
            assert times[i + limit] - times[i] >= shape.cap_window - 1e-9, f"cap at grant {i}"
        assert max(waited) > 0.0
        assert built.limiter.waiting == 0

    async def test_waiters_are_served_in_arrival_order(self, make: Make) -> None:
        built = await make(50, 0.5)
        order: list[int] = []

        async def take(i: int) -> None:
            await built.limiter.acquire()
            order.append(i)

        tasks = []
        for i in range(15):
            tasks.append(asyncio.create_task(take(i)))
            await asyncio.sleep(0)  # each one starts waiting before the next arrives
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
        assert order == list(range(15))

    async def test_a_cancelled_waiter_takes_no_slot_and_blocks_nobody(self, make: Make) -> None:
        built = await make(1, 0.3)
        limiter = built.limiter
        await limiter.acquire()
        head = asyncio.create_task(limiter.acquire())
        second = asyncio.create_task(limiter.acquire())
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.05)  # the head asked and sleeps until its slot
        assert limiter.waiting == 3
        head.cancel()
        second.cancel()
        await asyncio.wait_for(third, timeout=10)
        assert head.cancelled()
        assert second.cancelled()
        assert len(built.grants) == 2
        assert built.grants[1] - built.grants[0] >= 0.3 * (1 - 1e-6)
        assert limiter.waiting == 0

    async def test_acquire_reports_the_time_it_waited(self, make: Make) -> None:
        built = await make(1, 0.2)
        await built.limiter.acquire()
        start = time.monotonic()
        waited = await built.limiter.acquire()
        assert waited >= 0.1
        assert waited <= time.monotonic() - start + 1e-6

    async def test_a_waiter_cancelled_at_any_moment_ends(self, make: Make) -> None:
        # A stopping daemon cancels its dispatchers: a cancellation lost inside the limiter
        # would make it wait forever. Slots 10 ms apart: some cancellations land while a
        # waiter sleeps, some while it asks.
        limiter = (await make(100, 1.0)).limiter
        for i in range(200):

            async def busy() -> None:
                while True:
                    await limiter.acquire()

            task = asyncio.create_task(busy())
            await asyncio.sleep(0.0002 * (i % 11))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, f"cancellation lost at attempt {i}"
            assert task.cancelled()


class TestBackoff:
    async def test_a_throttle_lowers_the_rate_by_a_fifth_once_per_window(self, make: Make) -> None:
        built = await make(20, 1.0, guard=0.0)
        limiter = built.limiter
        await limiter.acquire()
        assert limiter.on_throttled() is True
        assert limiter.on_throttled() is False  # the same burst
        await built.settled()
        await limiter.acquire()
        assert limiter.effective_rate == pytest.approx(16.0)
        assert limiter.throttled_total == 2

    async def test_the_rate_recovers_in_quiet_windows(self, make: Make) -> None:
        built = await make(20, 0.2)
        limiter = built.limiter
        await limiter.acquire()
        limiter.on_throttled()
        await built.settled()
        await limiter.acquire()
        lowered = limiter.effective_rate
        assert lowered == pytest.approx(limiter.configured_rate * 0.8)
        await asyncio.sleep(0.5)  # two quiet windows and more
        await limiter.acquire()
        assert limiter.effective_rate > lowered
