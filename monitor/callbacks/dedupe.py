"""Duplicate deliveries: TRTC retries a callback until it is acknowledged, for up to a minute.

A delivery is known by two keys:

* the SHA-256 of its raw body, whatever the headers: TRTC resends the very bytes it signed,
  and a captured body can be replayed by anyone but not changed (the signature covers it). The
  ``SdkAppId`` header is not signed, so the application the body was first taken for is kept
  with it: the same body under another application is a forgery (``Claim.MISMATCH``), never a
  new task;
* the canonical content without ``CallbackTs`` (``parse.delivery_key``), so that a retry sent
  later, re-serialised, is still the same event.

Both are remembered for the whole window in which the message is still accepted at the door
(``callbacks.max_age`` plus ``callbacks.max_skew``): a replay is either too old or known.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "DEDUPE_MAX_ENTRIES",
    "DEDUPE_TTL_SECONDS",
    "Claim",
    "Deliveries",
    "DeliveryCache",
    "LocalDeliveries",
    "dedupe_window",
]

# At least five minutes, and always the whole window in which a message is accepted.
DEDUPE_TTL_SECONDS = 300.0
DEDUPE_MAX_ENTRIES = 100_000
# Beyond max_age + max_skew: the door's clock and the cache's may differ by a moment.
_WINDOW_MARGIN = 60.0


def dedupe_window(max_age: float, max_skew: float) -> float:
    """How long a delivery is remembered: longer than any accepted message stays acceptable."""
    return max(DEDUPE_TTL_SECONDS, max_age + max_skew + _WINDOW_MARGIN)


class Claim(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    MISMATCH = "mismatch"  # the same body seen before for another application


class DeliveryCache:
    """Deliveries seen recently: bounded in number and in age, oldest forgotten first.

    A delivery is claimed before it acts and released if acting fails, so that a retry sent
    while the first attempt is still working is not applied twice, and one after a failure is.
    Each entry remembers the application it was claimed for.
    """

    def __init__(
        self,
        ttl: float = DEDUPE_TTL_SECONDS,
        max_entries: int = DEDUPE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, key: bytes) -> bool:
        """True the first time ``key`` is seen within ``ttl``; it is remembered from now on."""
        return self.claim_for(key, 0) is Claim.NEW

    def claim_for(self, key: bytes, app: int) -> Claim:
        """``NEW`` the first time ``key`` is seen within ``ttl`` (remembered from now on, for
        ``app``); else ``DUPLICATE`` for the same ``app`` and ``MISMATCH`` for another."""
        now = self._clock()
        # Insertion order is time order (monotonic clock), so expiry pops from the front.
        while self._seen:
            oldest, (at, _) = next(iter(self._seen.items()))
            if now - at < self.ttl:
                break
            del self._seen[oldest]
        seen = self._seen.get(key)
        if seen is not None:
            return Claim.DUPLICATE if seen[1] == app else Claim.MISMATCH
        self._seen[key] = (now, app)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return Claim.NEW

    def release(self, key: bytes) -> None:
        self._seen.pop(key, None)


class Deliveries(Protocol):
    """Where the deliveries seen are remembered: this process, or shared by every replica."""

    async def claim(self, key: bytes, app: int, ttl: float) -> Claim: ...

    async def release(self, key: bytes) -> None: ...


class LocalDeliveries:
    """Deliveries remembered in this process (one replica: SQLite, or Redis alone)."""

    def __init__(self, cache: DeliveryCache | None = None) -> None:
        self.cache = cache if cache is not None else DeliveryCache()

    async def claim(self, key: bytes, app: int, ttl: float) -> Claim:
        self.cache.ttl = ttl
        return self.cache.claim_for(key, app)

    async def release(self, key: bytes) -> None:
        self.cache.release(key)
