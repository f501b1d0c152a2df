"""A dead replica is seen when its membership entry expires, not at the next heartbeat after it
(real redis-server on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aredis

from monitor.cluster.membership import Membership
from monitor.store.redis import RedisKeys
from tests.redis_server import RedisServer

KEYS = RedisKeys("test-detect:")
# A heartbeat far longer than the wait for the expiry below: only a check at the expiry itself
# can see the death in time.
HEARTBEAT, TIMEOUT = 30.0, 60.0


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aredis.Redis]:
    pool = aredis.Redis.from_url(redis_server.url)
    yield pool
    await pool.aclose()


async def dead_entry(client: aredis.Redis, name: str, expires_in: float) -> None:
    """An entry as a replica killed ``TIMEOUT - expires_in`` seconds after its last beat leaves."""
    seconds, micros = await client.time()
    await client.zadd(KEYS.members, {name: seconds + micros / 1e6 - (TIMEOUT - expires_in)})


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class TestDeathSeenAtExpiry:
    async def test_an_entry_expiring_before_the_next_heartbeat_is_dropped_when_it_expires(
        self, client: aredis.Redis
    ) -> None:
        changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        await dead_entry(client, "dead", expires_in=1.0)
        a = Membership(
            client,
            KEYS.members,
            "a",
            heartbeat=HEARTBEAT,
            member_timeout=TIMEOUT,
            on_change=lambda before, after: changes.append((before, after)),
        )
        await a.start()
        try:
            assert a.members == ("a", "dead")
            # The next exchange is due when the dead entry expires, not a heartbeat from now.
            assert 0.0 < a.next_wait() <= 1.1
            # Well before the next heartbeat (30 s) would have noticed it.
            await eventually(lambda: a.members == ("a",), timeout=HEARTBEAT / 2)
            # Nobody else left to watch: back to the heartbeat's own rhythm.
            assert a.next_wait() == HEARTBEAT
        finally:
            await a.stop()
        assert changes[:2] == [((), ("a", "dead")), (("a", "dead"), ("a",))]

    async def test_live_replicas_keep_the_heartbeat_rhythm(self, client: aredis.Redis) -> None:
        a = Membership(client, KEYS.members, "a", heartbeat=HEARTBEAT, member_timeout=TIMEOUT)
        b = Membership(client, KEYS.members, "b", heartbeat=HEARTBEAT, member_timeout=TIMEOUT)
        await a.start()
        await b.start()
        try:
            await a.beat()
            assert a.members == ("a", "b")
            # b beat just now: its entry expires a whole timeout away, beyond one heartbeat.
            assert a.next_wait() == HEARTBEAT
        finally:
            await b.stop()
            await a.stop()

    async def test_the_earliest_of_several_expiries_sets_the_next_check(
        self, client: aredis.Redis
    ) -> None:
        await dead_entry(client, "later", expires_in=20.0)
        await dead_entry(client, "sooner", expires_in=5.0)
        a = Membership(client, KEYS.members, "a", heartbeat=HEARTBEAT, member_timeout=TIMEOUT)
        await a.beat()
        assert a.members == ("a", "later", "sooner")
        assert 4.0 < a.next_wait() <= 5.1
