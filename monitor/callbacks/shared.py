"""Deliveries remembered in Redis, so that every replica recognises a repeat.

With several replicas behind one address, TRTC's retry (or a replay) of a body may reach
another replica than the first delivery did. Each delivery key is one Redis string,
``{prefix}callback-delivery:{hex}``, holding the application it was first taken for and
expiring with the window (``SET NX PX``): the first replica to claim it acts, every other one
sees a duplicate, or a mismatch if the application differs.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from monitor.callbacks.dedupe import Claim
from monitor.store.base import Store, StoreError
from monitor.store.redis import redis_connection_of
from monitor.store.redis.connection import RedisConnection

__all__ = ["SharedDeliveries", "deliveries_for"]


def deliveries_for(store: Store | None) -> SharedDeliveries | None:
    """Deliveries shared through ``store`` when it is Redis; None: this process keeps its own."""
    connection = redis_connection_of(store)
    return None if connection is None else SharedDeliveries(connection)


class SharedDeliveries:
    """The deliveries of every replica sharing one Redis (and key prefix)."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        # Claims whose release failed (Redis away): released before they are claimed again,
        # so that TRTC's retry of a delivery that failed is applied, not taken as a repeat.
        self._unreleased: set[bytes] = set()

    def _name(self, key: bytes) -> bytes:
        return self._connection.keys.callback_delivery(key)

    async def claim(self, key: bytes, app: int, ttl: float) -> Claim:
        name = self._name(key)
        try:
            client = self._connection.client
            if key in self._unreleased:
                await client.delete(name)
                self._unreleased.discard(key)
            for _ in range(3):  # the key may expire between SET and GET: try again
                if await client.set(name, str(app), nx=True, px=max(1, int(ttl * 1000))):
                    return Claim.NEW
                seen = await client.get(name)
                if seen is not None:
                    return Claim.DUPLICATE if int(seen) == app else Claim.MISMATCH
        except RedisError as exc:
            # Like any write while Redis is away: 503, and TRTC delivers again later.
            raise StoreError(f"callback deliveries: {type(exc).__name__}") from None
        return Claim.DUPLICATE

    async def release(self, key: bytes) -> None:
        try:
            await self._connection.client.delete(self._name(key))
        except (RedisError, StoreError):
            self._unreleased.add(key)
