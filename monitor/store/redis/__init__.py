"""Redis store: the state several replicas share, same contract as SQLite.

``connection`` (the connection and every key name, shared with the limiter, the cluster and
the callback deliveries), ``scripts`` (the Lua scripts), ``values`` (records to and from the
codec's values as JSON), ``store`` (the Store interface).
"""

from __future__ import annotations

from monitor.store.base import Store
from monitor.store.redis.connection import (
    COMMAND_TIMEOUT,
    RedisConnection,
    RedisKeys,
    redis_location,
    task_field,
    task_key_of,
)
from monitor.store.redis.store import REDIS_SCHEMA_VERSION, RedisStore

__all__ = [
    "COMMAND_TIMEOUT",
    "REDIS_SCHEMA_VERSION",
    "RedisConnection",
    "RedisKeys",
    "RedisStore",
    "redis_connection_of",
    "redis_location",
    "task_field",
    "task_key_of",
]


def redis_connection_of(store: Store | None) -> RedisConnection | None:
    """The Redis connection ``store`` shares with the other parts, or None if it is not Redis."""
    return store.connection if isinstance(store, RedisStore) else None
