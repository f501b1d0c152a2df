"""The store suite's fixtures: every behaviour test runs against both backends, a SQLite
file and a real ``redis-server`` (``backend``, ``store``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from monitor.store import SCHEMA_VERSION, SqliteStore, Store
from monitor.store.redis import REDIS_SCHEMA_VERSION, RedisStore
from tests.redis_server import RedisServer
from tests.store.helpers import (
    KEY_PREFIX,
    Backend,
    RedisSync,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "monitor.db"


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend(
            "sqlite",
            lambda: SqliteStore(db_path),
            str(db_path),
            str(SCHEMA_VERSION),
            f"sqlite:{db_path}",
        )
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield Backend(
        "redis",
        lambda: RedisStore(server.url, KEY_PREFIX),
        f"127.0.0.1:{server.port}/0",
        str(REDIS_SCHEMA_VERSION),
        server.url,
    )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def redis_sync() -> Iterator[RedisSync]:
    """A plain client beside the store, for tests that tamper with what Redis holds."""
    clients: list[redis.Redis] = []

    def connect(backend: Backend) -> redis.Redis:
        assert backend.name == "redis"
        client = redis.Redis.from_url(backend.target)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
