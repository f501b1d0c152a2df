"""Duplicate deliveries: TRTC retries a callback until it is acknowledged, for up to a minute."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEDUPE_MAX_ENTRIES", "DEDUPE_TTL_SECONDS", "DeliveryCache"]

# TRTC stops retrying once a message is a minute old; five minutes leaves room for a sender
# that is late or whose clock is off, at a bounded cost (about 150 bytes per entry).
DEDUPE_TTL_SECONDS = 300.0
DEDUPE_MAX_ENTRIES = 50_000


class DeliveryCache:
    """Deliveries seen recently: bounded in number and in age, oldest forgotten first.

    A delivery is claimed before it acts and released if acting fails, so that a retry sent
    while the first attempt is still working is not applied twice, and one after a failure is.
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
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, key: bytes) -> bool:
        """True the first time ``key`` is seen within ``ttl``; it is remembered from now on."""
        now = self._clock()
        # Insertion order is time order (monotonic clock), so expiry pops from the front.
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.ttl:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def release(self, key: bytes) -> None:
        self._seen.pop(key, None)
