"""Membership heartbeats and the change feed against a real redis-server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aredis

from monitor.cluster.feed import Change, ChangeFeed, decode_change, encode_change
from monitor.cluster.membership import Membership, default_replica_id
from monitor.models import TaskKey
from monitor.store.redis import RedisKeys
from tests.redis_server import RedisServer, running_redis

KEYS = RedisKeys("test-cluster:")
HEARTBEAT, TIMEOUT = 0.1, 0.4


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[aredis.Redis]]:
    pools = [aredis.Redis.from_url(redis_server.url) for _ in range(3)]
    yield pools
    for pool in pools:
        await pool.aclose()


def member(
    client: aredis.Redis, name: str, changes: list[tuple[tuple[str, ...], tuple[str, ...]]]
) -> Membership:
    return Membership(
        client,
        KEYS.members,
        name,
        heartbeat=HEARTBEAT,
        member_timeout=TIMEOUT,
        on_change=lambda before, after: changes.append((before, after)),
    )


class TestMembership:
    async def test_replicas_see_each_other_and_a_leaver_goes_at_once(
        self, clients: list[aredis.Redis]
    ) -> None:
        changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        a, b, c = (member(cl, n, changes) for cl, n in zip(clients, "abc", strict=True))
        for m in (a, b, c):
            await m.start()
        try:
            await eventually(lambda: all(m.members == ("a", "b", "c") for m in (a, b, c)))
            await c.stop(leave=True)
            await eventually(lambda: a.members == b.members == ("a", "b"))
            assert not c.joined
        finally:
            for m in (a, b):
                await m.stop()
        assert ((), ("a",)) in changes  # a's first view: itself alone
        assert (("a", "b", "c"), ("a", "b")) in changes

    async def test_a_silent_replica_is_dead_after_the_timeout(
        self, clients: list[aredis.Redis]
    ) -> None:
        changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        a, b = member(clients[0], "a", changes), member(clients[1], "b", [])
        await a.start()
        await b.start()
        try:
            await eventually(lambda: a.members == ("a", "b"))
            await b.stop(leave=False)  # as a kill -9 would: the entry stays until it times out
            await asyncio.sleep(TIMEOUT / 2)
            assert a.members == ("a", "b")
            await eventually(lambda: a.members == ("a",), timeout=TIMEOUT + 5)
        finally:
            await a.stop()
        # Seen dead, then a's own leave at stop.
        assert changes[-2:] == [(("a", "b"), ("a",)), (("a",), ())]

    async def test_a_replica_cut_off_from_redis_counts_itself_out_and_rejoins(
        self, tmp_path: Path
    ) -> None:
        with running_redis(tmp_path / "r") as server:
            client = aredis.Redis.from_url(server.url)
            changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
            a = member(client, "a", changes)
            try:
                await a.start()
                assert a.members == ("a",)
                server.stop()
                await eventually(lambda: a.members == (), timeout=TIMEOUT + 5)
                server.start()
                await eventually(lambda: a.members == ("a",))
            finally:
                await a.stop()
                await client.aclose()
        # Joined, counted out, rejoined, and left at stop.
        assert changes == [((), ("a",)), (("a",), ()), ((), ("a",)), (("a",), ())]

    def test_the_default_replica_id_names_host_and_process(self) -> None:
        assert default_replica_id().endswith(f"-{os.getpid()}")

    def test_a_timeout_shorter_than_two_heartbeats_is_refused(self) -> None:
        client = aredis.Redis()
        with pytest.raises(ValueError, match="twice"):
            Membership(client, KEYS.members, "a", heartbeat=1.0, member_timeout=1.5)


Collected = list[Change]


def feed(
    client: aredis.Redis, name: str, got: Collected, reconnects: list[str] | None = None
) -> ChangeFeed:
    async def handle(change: Change) -> None:
        got.append(change)

    async def resync() -> None:
        if reconnects is not None:
            reconnects.append(name)

    on_reconnect: Callable[[], Awaitable[None]] = resync
    return ChangeFeed(client, KEYS.changes, name, handle, on_reconnect=on_reconnect, retry=0.1)


class TestChangeFeed:
    async def test_a_change_reaches_the_other_replicas_and_not_its_origin(
        self, clients: list[aredis.Redis]
    ) -> None:
        got_a: Collected = []
        got_b: Collected = []
        a, b = feed(clients[0], "a", got_a), feed(clients[1], "b", got_b)
        await a.start()
        await b.start()
        try:
            key = TaskKey(1400000001, "任务-1")
            assert await a.publish("registered", key) == 2
            await b.publish("resync")
            await eventually(lambda: len(got_b) == 1 and len(got_a) == 1)
            assert got_b == [Change("registered", "a", key)]
            assert got_a == [Change("resync", "b", None)]
        finally:
            await a.stop()
            await b.stop()

    async def test_a_malformed_message_is_skipped_and_the_feed_goes_on(
        self, clients: list[aredis.Redis]
    ) -> None:
        got: Collected = []
        b = feed(clients[1], "b", got)
        await b.start()
        try:
            for junk in (b"not json", b'["exploded","a",null]', b'["callback","a",["x","y"]]'):
                await clients[0].publish(KEYS.changes, junk)
            await clients[0].publish(KEYS.changes, encode_change(Change("removed", "a", None)))
            await eventually(lambda: len(got) == 1)
            assert got == [Change("removed", "a", None)]
        finally:
            await b.stop()

    async def test_after_redis_comes_back_the_feed_resubscribes_and_resyncs(
        self, tmp_path: Path
    ) -> None:
        with running_redis(tmp_path / "r") as server:
            sender, listener = (aredis.Redis.from_url(server.url) for _ in range(2))
            got: Collected = []
            reconnects: list[str] = []
            b = feed(listener, "b", got, reconnects)
            try:
                await b.start()
                server.stop()
                await asyncio.sleep(0.3)
                server.start()
                await eventually(lambda: reconnects == ["b"])
                await sender.publish(KEYS.changes, encode_change(Change("callback", "a", None)))
                await eventually(lambda: len(got) == 1)
            finally:
                await b.stop()
                await sender.aclose()
                await listener.aclose()

    def test_messages_round_trip_and_unknown_kinds_decode_to_none(self) -> None:
        change = Change("callback", "replica-1", TaskKey(1, "t\u00e9"))
        assert decode_change(encode_change(change)) == change
        assert decode_change(b'["later-kind","a",null]') is None
        assert decode_change(b"[1,2]") is None
