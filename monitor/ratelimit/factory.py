"""The one place that chooses a limiter backend: every other module sees ``RateLimiter`` only."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.ratelimit.base import RateLimiter
from monitor.ratelimit.local import AsyncRateLimiter
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.store.base import Store
from monitor.store.redis import RedisStore

__all__ = ["BucketKey", "LimiterSettings", "new_limiter"]


@dataclass(frozen=True, slots=True, order=True)
class BucketKey:
    """One budget: an account's requests to one access host (all regions share a host)."""

    account: str
    host: str

    def __str__(self) -> str:
        return f"{self.account}@{self.host}"


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


def new_limiter(
    key: BucketKey,
    settings: LimiterSettings,
    backend: str = "sqlite",
    *,
    store: Store | None = None,
) -> RateLimiter:
    """A limiter for ``key``. ``backend`` is the configured ``storage.backend``: a daemon with
    its own store keeps its budget in process; replicas sharing a store share the budget.

    The shared budget lives in the Redis store's server, on its connection pool and under its
    key prefix, so ``"redis"`` needs that store (open) as ``store``.
    """
    if backend == "sqlite":
        return AsyncRateLimiter(
            limit=settings.limit, window=settings.window, guard=settings.guard, key=str(key)
        )
    if backend == "redis":
        if not isinstance(store, RedisStore):
            raise ValueError("the redis limiter shares the Redis store: pass the open store")
        return RedisRateLimiter(
            store.client,
            store.keys.limiter(str(key)),
            store.keys.limiter_sends(str(key)),
            settings.limit,
            settings.window,
            guard=settings.guard,
            key=str(key),
        )
    raise ValueError(f"unknown limiter backend {backend!r}")
