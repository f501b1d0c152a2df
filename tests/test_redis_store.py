"""What only the Redis store has: key layout, a server that goes away and comes back, secrets.

The behaviour both backends share is tested once for both in ``tests/store/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from monitor.config import parse_config
from monitor.models import Source, Status, Task, Transition
from monitor.store import Store, StoreError
from monitor.store.base import AlertRecord
from monitor.store.factory import new_store
from monitor.store.redis import RedisStore
from tests.redis_server import RedisServer, running_redis
from tests.support import free_port

APP = 1400000001


def task(task_id: str, status: Status = Status.IN_PROGRESS) -> Task:
    return Task(APP, task_id, "ap-guangzhou", "default", status=status, status_since=1.0)


async def exercise(store: Store, task_id: str) -> Transition:
    """One of each kind of write, so every key kind exists afterwards."""
    t = task(task_id)
    await store.save_task(t)
    await store.save_health([t])
    t.status, t.ended_at = Status.ENDED, 5.0
    recorded = await store.record_transition(
        t, Transition(APP, task_id, Status.IN_PROGRESS, Status.ENDED, 5.0, Source.POLL)
    )
    await store.save_alert(
        AlertRecord(f"fp-{task_id}", "RecordingTaskExited", {}, {}, "firing", 1.0, task=t.key)
    )
    await store.meta_set("k", "v")
    return recorded


class TestLayout:
    async def test_every_key_is_under_the_prefix_and_prefixes_do_not_meet(
        self, redis_server: RedisServer
    ) -> None:
        async with (
            RedisStore(redis_server.url, "dep-a:") as a,
            RedisStore(redis_server.url, "dep-b:") as b,
        ):
            await exercise(a, "t-a")
            await exercise(b, "t-b")
            assert [t.task_id for t in await a.load_tasks()] == ["t-a"]
            assert [t.task_id for t in await b.recent_transitions(10)] == ["t-b"]
            assert [r.fingerprint for r in await b.load_alerts()] == ["fp-t-b"]

            client = redis.Redis.from_url(redis_server.url)
            try:
                keys = {key.decode() for key in client.scan_iter(count=1000)}
            finally:
                client.close()
            assert keys
            assert {k for k in keys if not k.startswith(("dep-a:", "dep-b:"))} == set()
            # Deleting and purging leave no per-task key behind.
            await a.delete_task(task("t-a").key)
            assert await b.purge(10.0) == [task("t-b").key]
            client = redis.Redis.from_url(redis_server.url)
            try:
                left = sorted(key.decode() for key in client.scan_iter(count=1000))
            finally:
                client.close()
        # What remains: the counters and the meta hashes, nothing about a task.
        assert left == ["dep-a:meta", "dep-a:seq", "dep-b:meta", "dep-b:seq"]

    async def test_a_newer_layout_is_refused_and_names_the_prefix(
        self, redis_server: RedisServer
    ) -> None:
        client = redis.Redis.from_url(redis_server.url)
        try:
            client.hset("dep:meta", "schema_version", "2")
        finally:
            client.close()
        store = RedisStore(redis_server.url, "dep:")
        with pytest.raises(StoreError, match="layout version") as caught:
            await store.open()
        assert "'dep:'" in str(caught.value)
        with pytest.raises(StoreError, match="closed"):
            await store.load_tasks()


class TestPurgeInBatches:
    async def test_a_purge_larger_than_a_batch_takes_every_task_and_nothing_else(
        self, redis_server: RedisServer
    ) -> None:
        async with RedisStore(redis_server.url, "b:") as store:
            store.purge_batch = 3
            for i in range(7):
                await exercise(store, f"t-{i}")  # each ends at 5.0, with an alert
            await store.save_task(task("live"))
            assert await store.purge(6.0) == sorted(task(f"t-{i}").key for i in range(7))
            assert [t.task_id for t in await store.load_tasks()] == ["live"]
            assert await store.recent_transitions(100) == []
            assert await store.load_alerts() == []
            assert await store.purge(6.0) == []


class TestUnavailable:
    async def test_an_unreachable_redis_is_a_store_error_without_the_password(self) -> None:
        port = free_port()  # nothing listens there
        store = RedisStore(f"redis://:s3cret-Pw9@127.0.0.1:{port}/3")
        with pytest.raises(StoreError) as caught:
            await store.open()
        message = str(caught.value)
        assert f"127.0.0.1:{port}/3" in message
        assert "s3cret-Pw9" not in message
        assert "s3cret-Pw9" not in repr(store)

    async def test_a_url_that_is_not_redis_is_refused_without_echoing_it(self) -> None:
        store = RedisStore("http://user:s3cret-Pw9@example.invalid/")
        with pytest.raises(StoreError, match="not a Redis URL") as caught:
            await store.open()
        assert "s3cret-Pw9" not in str(caught.value)

    async def test_redis_going_away_fails_calls_and_its_return_resumes_them(
        self, tmp_path: Path
    ) -> None:
        with running_redis(tmp_path / "aof", appendonly=True) as server:
            async with RedisStore(server.url) as store:
                acknowledged = await exercise(store, "t-1")
                server.stop()  # SIGTERM: the AOF is flushed, as a clean restart does

                with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}"):
                    await store.load_tasks()
                with pytest.raises(StoreError):
                    await store.save_task(task("t-2"))

                server.start()  # same port, same directory: the AOF is read back
                # The same store object resumes without being reopened.
                assert [t.task_id for t in await store.load_tasks()] == ["t-1"]
                assert await store.transitions(task("t-1").key) == [acknowledged]
                assert [r.fingerprint for r in await store.load_alerts()] == ["fp-t-1"]
                assert await store.meta_get("k") == "v"
                await store.save_task(task("t-2"))
                assert len(await store.load_tasks()) == 2


class TestFactory:
    async def test_new_store_builds_a_redis_store_from_the_configured_variable(
        self, redis_server: RedisServer
    ) -> None:
        config = parse_config(
            "storage:\n  backend: redis\n  redis: {url_env: MY_REDIS, key_prefix: 'f:'}\n"
        )
        store = new_store(config.storage, environ={"MY_REDIS": redis_server.url})
        assert isinstance(store, RedisStore)
        async with store:
            await store.save_task(task("t-1"))
        again = RedisStore(redis_server.url, "f:")
        async with again:
            assert [t.task_id for t in await again.load_tasks()] == ["t-1"]

    def test_new_store_without_the_url_names_where_it_looked(self) -> None:
        config = parse_config("storage: {backend: redis}\n")
        with pytest.raises(StoreError, match="TRTC_MONITOR_REDIS_URL"):
            new_store(config.storage, environ={})

    def test_redis_store_satisfies_the_store_protocol(self) -> None:
        store: Store = RedisStore("redis://127.0.0.1:6379/0")  # checked by mypy
        assert "127.0.0.1:6379/0" in repr(store)


class TestReplicasShareOneStore:
    async def test_concurrent_replicas_never_share_a_seq_and_lose_no_transition(
        self, redis_server: RedisServer
    ) -> None:
        stores = [RedisStore(redis_server.url, "shared:") for _ in range(3)]
        for store in stores:
            await store.open()
        try:

            async def writer(store: Store, name: str) -> list[int]:
                seqs = []
                for i in range(40):
                    t = task(f"{name}-{i}", Status.IDLE)
                    t.status = Status.IN_PROGRESS
                    recorded = await store.record_transition(
                        t,
                        Transition(
                            APP, t.task_id, Status.IDLE, Status.IN_PROGRESS, 1.0, Source.POLL
                        ),
                    )
                    assert recorded.seq is not None
                    seqs.append(recorded.seq)
                return seqs

            results = await asyncio.gather(
                *(writer(s, n) for s, n in zip(stores, "abc", strict=True))
            )
            every = [seq for seqs in results for seq in seqs]
            assert len(set(every)) == 120
            for seqs in results:
                assert seqs == sorted(seqs)
            recent = await stores[0].recent_transitions(1000)
            assert sorted(t.seq or 0 for t in recent) == sorted(every)
            assert len(await stores[1].load_tasks()) == 120
        finally:
            for store in stores:
                await store.close()

    async def test_a_lost_counter_does_not_reuse_a_seq(self, redis_server: RedisServer) -> None:
        async with RedisStore(redis_server.url, "p:") as store:
            first = await exercise(store, "t-1")
            client = redis.Redis.from_url(redis_server.url)
            try:
                client.delete("p:seq")
            finally:
                client.close()
            second = await exercise(store, "t-2")
            assert first.seq is not None
            assert second.seq is not None
            assert second.seq > first.seq
            assert [t.task_id for t in await store.recent_transitions(10)] == ["t-2", "t-1"]

    async def test_ping_says_whether_redis_answers(self, tmp_path: Path) -> None:
        with running_redis(tmp_path / "r") as server:
            store = RedisStore(server.url)
            assert await store.ping() is False  # not open
            async with store:
                assert await store.ping() is True
                server.stop()
                assert await store.ping() is False
                server.start()
                assert await store.ping() is True


class TestCancellation:
    async def test_a_cancelled_call_ends_whenever_the_cancel_lands(
        self, redis_server: RedisServer
    ) -> None:
        # Some client library versions (redis-py 8.0, 8.1) drop a cancellation that lands
        # inside a command: a stopping daemon would then wait forever on its pollers.
        async with RedisStore(redis_server.url, "c:") as store:
            for i in range(300):

                async def busy() -> None:
                    while True:
                        await store.meta_get("k")

                task = asyncio.create_task(busy())
                await asyncio.sleep(0.0002 * (i % 11))
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=5)
                assert done, f"cancellation lost at attempt {i}"
                assert task.cancelled()
