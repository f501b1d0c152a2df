"""The in-process limiter: a :class:`WindowBudget` for coroutines, FIFO and cancellation-safe."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

from monitor.ratelimit.budget import WindowBudget

__all__ = ["AsyncRateLimiter", "mark_sent"]


# The latest grant of the current context. The scheduler acquires a token and then starts the
# poll as a task, which copies the context: so each poll knows its own grant and, through
# ``mark_sent``, can say when its request really left.
_GRANT: contextvars.ContextVar[tuple[AsyncRateLimiter, float] | None] = contextvars.ContextVar(
    "rate_limit_grant", default=None
)


def mark_sent() -> None:
    """Tell the limiter that granted this context's request that it is being written now.

    Called by the client right before it sends; a no-op outside a granted context, and at most
    once per grant.
    """
    grant = _GRANT.get()
    if grant is not None:
        _GRANT.set(None)
        limiter, granted = grant
        limiter._sent(granted)


class AsyncRateLimiter:
    """A :class:`WindowBudget` for coroutines: FIFO waiters, cancellation-safe.

    ``clock`` must tick with the event loop's clock (the default, ``time.monotonic``, does):
    the limiter sleeps on the loop for the delays the clock implies.
    """

    __slots__ = ("_budget", "_clock", "_key", "_lock", "_throttled", "_waiting")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        key: str = "",
        guard: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        budget: WindowBudget | None = None,
    ) -> None:
        """``limit`` sends per ``window`` seconds; ``budget`` replaces the default arithmetic
        (it must have the same limit and window; ``guard`` is then its own)."""
        if budget is None:
            budget = WindowBudget(limit, window, guard=guard)
        elif (budget.limit, budget.window) != (limit, float(window)):
            raise ValueError("budget limit and window differ from the limiter's")
        self._budget = budget
        self._key = key
        self._clock = clock
        # asyncio.Lock hands over in FIFO order and forgets cancelled waiters; the waiter at the
        # head sleeps until its slot while holding it, so nobody can overtake it.
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._throttled = 0

    @property
    def key(self) -> str:
        return self._key

    @property
    def limit(self) -> int:
        return self._budget.limit

    @property
    def window(self) -> float:
        return self._budget.window

    @property
    def guard(self) -> float:
        return self._budget.guard

    @property
    def configured_rate(self) -> float:
        """Requests per second without backoff: ``limit * (1 - guard) / window``."""
        return self._budget.configured_rate

    @property
    def effective_rate(self) -> float:
        return self._budget.effective_rate(self._clock())

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
                    now = self._clock()
                    wait = self._budget.delay(now)
                    if wait <= 0.0:
                        # No await between the check and the record: the slot cannot be lost
                        # to cancellation once taken, nor taken by a cancelled waiter.
                        self._budget.record(now)
                        # The grant travels with the context into the task that sends it.
                        _GRANT.set((self, now))
                        return now - start
                    # Timers may fire a little early or late; the loop re-checks either way.
                    await asyncio.sleep(wait)
        finally:
            self._waiting -= 1

    def on_throttled(self) -> bool:
        self._throttled += 1
        return self._budget.on_throttled(self._clock())

    def _sent(self, granted: float) -> None:
        self._budget.sent(granted, self._clock())

    def __repr__(self) -> str:
        return (
            f"AsyncRateLimiter(key={self._key!r}, limit={self.limit}, window={self.window}, "
            f"effective_rate={self.effective_rate:.3f})"
        )
