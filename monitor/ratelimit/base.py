"""The limiter's contract, and what both backends share.

:class:`RateLimiter` is what the scheduler and the poll step see. :class:`QueuedLimiter` is the
part the local and the shared limiter have in common: the figures they are sized by, FIFO among
a process's waiters, cancellation safety and the waiting loop. A backend only says whether a
request may go now (and if not, how long to wait) and how a throttled answer lowers its rate.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Final, Protocol

from monitor.ratelimit.window import BudgetShape

__all__ = ["QueuedLimiter", "RateLimiter"]


class RateLimiter(Protocol):
    """What the scheduler and the API client need from a request budget."""

    @property
    def key(self) -> str:
        """Which budget this is, e.g. ``"default@trtc.tencentcloudapi.com"``."""
        ...

    @property
    def limit(self) -> int:
        """Configured requests per window."""
        ...

    @property
    def window(self) -> float:
        """Window length in seconds."""
        ...

    @property
    def guard(self) -> float:
        """Fraction of the limit kept unused against arrival jitter."""
        ...

    @property
    def effective_rate(self) -> float:
        """Requests per second currently allowed, after backoff."""
        ...

    async def acquire(self) -> float:
        """Wait for permission to send one request now; return the seconds waited."""
        ...

    def on_throttled(self) -> bool:
        """Report a throttled answer; return whether the rate was lowered."""
        ...


class QueuedLimiter(ABC):
    """A limiter whose waiters queue in arrival order.

    The head waiter holds a lock while it asks for a grant and while it sleeps for the wait it
    was told, so nobody overtakes it; ``asyncio.Lock`` hands over in FIFO order and forgets
    cancelled waiters, so a cancelled waiter takes no slot and blocks nobody.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_shape",
        "_throttled",
        "_waiting",
        "configured_rate",
        "guard",
        "key",
        "limit",
        "window",
    )

    def __init__(self, shape: BudgetShape, *, key: str, clock: Callable[[], float]) -> None:
        """``clock`` must tick with the event loop's clock (``time.monotonic`` does): the
        limiter sleeps on the loop for the delays it is told."""
        self._shape = shape
        # The figures it was sized by, fixed for its life (a new size means a new limiter).
        self.key: Final = key
        self.limit: Final = shape.limit
        self.window: Final = shape.window
        self.guard: Final = shape.guard
        # Requests per second without backoff: ``limit * (1 - guard) / window``.
        self.configured_rate: Final = shape.configured_rate
        self._clock = clock
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._throttled = 0

    @property
    @abstractmethod
    def effective_rate(self) -> float:
        """Requests per second currently allowed, after backoff."""

    @property
    def waiting(self) -> int:
        """Coroutines currently waiting in ``acquire``."""
        return self._waiting

    @property
    def throttled_total(self) -> int:
        """Throttled answers reported so far (whether or not they lowered the rate)."""
        return self._throttled

    async def acquire(self) -> float:
        """Wait until a request may be sent, count it as sent, return the seconds waited."""
        start = self._clock()
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    wait = await self._grant()
                    if wait <= 0.0:
                        return self._clock() - start
                    # Timers may fire a little early or late; the next ask re-checks either way.
                    await asyncio.sleep(wait)
        finally:
            self._waiting -= 1

    def on_throttled(self) -> bool:
        """Report a throttled answer; return whether the rate was lowered."""
        self._throttled += 1
        return self._lower_rate()

    @abstractmethod
    async def _grant(self) -> float:
        """Take a slot if one is free now (return 0.0), else the seconds to wait for one."""

    @abstractmethod
    def _lower_rate(self) -> bool:
        """Apply a throttled answer to the rate; return whether it was lowered."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(key={self.key!r}, limit={self.limit}, "
            f"window={self.window}, effective_rate={self.effective_rate:.3f})"
        )
