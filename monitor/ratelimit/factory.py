"""The one place that chooses a limiter backend: every other module sees ``RateLimiter`` only."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from monitor.ratelimit.base import RateLimiter
from monitor.ratelimit.local import LocalRateLimiter
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.store.base import Store
from monitor.store.redis import redis_connection_of

__all__ = ["BucketKey", "LimiterBackend", "LimiterSettings", "new_limiter"]


# Each API action has its own quota (20 per second on each action's page): a budget is per
# action too. The action of cloud recordings is the one budget names leave out.
DESCRIBE_CLOUD_RECORDING = "DescribeCloudRecording"


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    """One budget: an account's requests of one action to one access host (all regions share
    a host)."""

    account: str
    host: str
    action: str = DESCRIBE_CLOUD_RECORDING

    def __str__(self) -> str:
        # DescribeCloudRecording's budget keeps the name earlier versions gave it (the shared
        # limiter's Redis key), so replicas of both versions share one budget.
        if self.action == DESCRIBE_CLOUD_RECORDING:
            return f"{self.account}@{self.host}"
        return f"{self.account}@{self.host}/{self.action}"


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    """What a limiter is sized by; a change of any of them means a new limiter."""

    limit: int
    window: float
    guard: float

    @property
    def capacity(self) -> float:
        """Requests per second the limiter sends under overload: the limit less the guard."""
        return self.limit / self.window * (1.0 - self.guard)


class LimiterBackend(enum.Enum):
    """Where a budget is kept: in this process, or in Redis for every replica to share."""

    LOCAL = "local"
    REDIS = "redis"

    @classmethod
    def for_storage(cls, storage_backend: str) -> LimiterBackend:
        """A daemon alone on its own store keeps its budget in process; replicas sharing a
        Redis store share the budget too."""
        return cls.REDIS if storage_backend == "redis" else cls.LOCAL


def new_limiter(
    key: BucketKey,
    settings: LimiterSettings,
    backend: LimiterBackend = LimiterBackend.LOCAL,
    *,
    store: Store | None = None,
) -> RateLimiter:
    """A limiter for ``key``.

    The shared budget lives in the Redis store's server, on its connection pool and under its
    key prefix, so :attr:`LimiterBackend.REDIS` needs that store (open) as ``store``.
    """
    if backend is LimiterBackend.LOCAL:
        return LocalRateLimiter(
            limit=settings.limit, window=settings.window, guard=settings.guard, key=str(key)
        )
    connection = redis_connection_of(store)
    if connection is None:
        raise ValueError("the redis limiter shares the Redis store: pass the open store")
    return RedisRateLimiter(
        connection.client,
        connection.keys.limiter(str(key)),
        connection.keys.limiter_sends(str(key)),
        settings.limit,
        settings.window,
        guard=settings.guard,
        key=str(key),
    )
