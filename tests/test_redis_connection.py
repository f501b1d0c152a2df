"""The one Redis connection a deployment's parts share: the store's, with its key layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.callbacks.dedupe import Claim
from monitor.callbacks.shared import deliveries_for
from monitor.models import TaskKey
from monitor.ratelimit.factory import BucketKey, LimiterBackend, LimiterSettings, new_limiter
from monitor.store.base import StoreError
from monitor.store.redis import RedisConnection, RedisStore, redis_connection_of
from monitor.store.redis.connection import RedisKeys
from monitor.store.sqlite import SqliteStore
from tests.redis_server import RedisServer

PREFIX = "test-conn:"


def test_every_key_family_is_under_the_prefix() -> None:
    keys = RedisKeys(PREFIX)
    task = TaskKey(1400000001, "任务")
    names = [
        keys.tasks,
        keys.health,
        keys.ended,
        keys.seq,
        keys.transitions,
        keys.transition_seqs,
        keys.task_transitions(task),
        keys.alerts,
        keys.alert_tasks,
        keys.task_alerts(task),
        keys.meta,
        keys.members,
        keys.changes,
        keys.limiter("main/host"),
        keys.limiter_sends("main/host"),
        keys.callback_delivery(b"\x01\xff"),
    ]
    assert all(name.startswith(PREFIX.encode()) for name in names)
    assert len(set(names)) == len(names)
    assert keys.callback_delivery(b"\x01\xff") == b"test-conn:callback-delivery:01ff"


def test_only_a_redis_store_shares_a_connection(tmp_path: Path) -> None:
    assert redis_connection_of(None) is None
    assert redis_connection_of(SqliteStore(tmp_path / "m.db")) is None
    store = RedisStore("redis://127.0.0.1:1/0", PREFIX)
    connection = redis_connection_of(store)
    assert isinstance(connection, RedisConnection)
    assert connection is store.connection
    assert connection.keys is store.keys
    with pytest.raises(StoreError, match="is closed"):
        connection.client  # noqa: B018  # closed until the store opens


async def test_the_limiter_and_the_deliveries_use_the_store_s_connection(
    redis_server: RedisServer,
) -> None:
    async with RedisStore(redis_server.url, PREFIX) as store:
        connection = store.connection
        assert await connection.ping()
        deliveries = deliveries_for(store)
        assert deliveries is not None
        assert await deliveries.claim(b"\x07", 1400000001, 60.0) is Claim.NEW
        assert await connection.client.get(connection.keys.callback_delivery(b"\x07")) == (
            b"1400000001"
        )
        assert await deliveries.claim(b"\x07", 1400000001, 60.0) is Claim.DUPLICATE
        key = BucketKey("main", "trtc.tencentcloudapi.com")
        limiter = new_limiter(
            key,
            LimiterSettings(limit=20, window=1.0, guard=0.02),
            LimiterBackend.REDIS,
            store=store,
        )
        await limiter.acquire()
        assert await connection.client.exists(connection.keys.limiter(str(key)))
    assert not await connection.ping()
