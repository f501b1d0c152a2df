"""Pacing of one chat robot: token buckets kept under the platform's published rate.

Pure: time is an argument. A platform states its limit as "N messages per window" and counts
them its own way (fixed minutes, sliding windows; reported, not documented), so the bucket is
sized to be safe under the strictest reading, a sliding window measured where the requests
*arrive*: a bucket of capacity ``b`` refilling at ``r`` lets at most ``b + r * window`` requests
start in any window, and since a worker sends one request at a time, arrivals can bunch up
by at most one more. Hence ``b + r * window <= N - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Refilling by float arithmetic lands a hair below a whole token; that hair is not worth a wait
# (and waiting for it can be shorter than the clock's resolution: the waiter would spin).
_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` messages per ``window`` seconds, as the platform publishes it."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ValueError("a rate needs limit >= 1 and window > 0")


class TokenBucket:
    """Up to ``capacity`` messages at once, then one every ``1 / refill`` seconds."""

    __slots__ = ("_at", "_tokens", "capacity", "refill")

    def __init__(self, capacity: float, refill: float, now: float) -> None:
        if capacity < 1 or refill <= 0:
            raise ValueError("capacity must be >= 1 and refill > 0")
        self.capacity = capacity
        self.refill = refill
        self._tokens = capacity
        self._at = now

    @classmethod
    def under(cls, rate: Rate, now: float) -> TokenBucket:
        """The bucket that never lets more than ``rate.limit - 1`` requests start in any
        window (see the module docstring); with a limit of 1 or 2 the best it can do is one
        request per window."""
        usable = rate.limit - 1
        if usable < 2:
            return cls(1.0, 1.0 / rate.window, now)
        capacity = max(1, usable // 4)  # a short burst, most of the budget spread evenly
        return cls(float(capacity), (usable - capacity) / rate.window, now)

    def _fill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.refill)
            self._at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._fill(now)
        return 0.0 if self._tokens >= 1 - _EPSILON else (1 - self._tokens) / self.refill

    def take(self, now: float) -> bool:
        """Spend a token if one is available."""
        self._fill(now)
        if self._tokens < 1 - _EPSILON:
            return False
        self._tokens = max(0.0, self._tokens - 1)
        return True

    def empty(self, now: float) -> None:
        """Forget the saved-up burst: after a "too fast" answer the platform's window is full
        (perhaps someone else posts to the same robot), so start again slowly."""
        self._fill(now)
        self._tokens = 0.0


class Pacer:
    """Several buckets that must all agree (Feishu: per minute and per second)."""

    __slots__ = ("buckets",)

    def __init__(self, rates: Sequence[Rate], now: float) -> None:
        if not rates:
            raise ValueError("at least one rate")
        self.buckets = tuple(TokenBucket.under(rate, now) for rate in rates)

    def wait(self, now: float) -> float:
        return max(bucket.wait(now) for bucket in self.buckets)

    def take(self, now: float) -> bool:
        """Spend a token of every bucket, or none."""
        if self.wait(now) > 0:
            return False
        for bucket in self.buckets:
            bucket.take(now)
        return True

    def empty(self, now: float) -> None:
        for bucket in self.buckets:
            bucket.empty(now)
