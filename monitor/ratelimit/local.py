"""The in-process limiter: a :class:`WindowBudget` behind the shared FIFO waiting loop."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable

from monitor.ratelimit.base import QueuedLimiter
from monitor.ratelimit.window import DEFAULT_GUARD, WindowBudget

__all__ = ["LocalRateLimiter", "mark_sent"]


# The latest grant of the current context. The scheduler acquires a token and then starts the
# poll as a task, which copies the context: so each poll knows its own grant and, through
# ``mark_sent``, can say when its request really left.
_GRANT: contextvars.ContextVar[tuple[LocalRateLimiter, float] | None] = contextvars.ContextVar(
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


class LocalRateLimiter(QueuedLimiter):
    """The budget of one process: a :class:`WindowBudget` for coroutines."""

    __slots__ = ("_budget",)

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        key: str = "",
        guard: float = DEFAULT_GUARD,
        clock: Callable[[], float] = time.monotonic,
        budget: WindowBudget | None = None,
    ) -> None:
        """``limit`` sends per ``window`` seconds; ``budget`` replaces the default arithmetic
        (it must have the same limit and window; ``guard`` is then its own)."""
        if budget is None:
            budget = WindowBudget(limit, window, guard=guard)
        elif (budget.shape.limit, budget.shape.window) != (limit, float(window)):
            raise ValueError("budget limit and window differ from the limiter's")
        super().__init__(budget.shape, key=key, clock=clock)
        self._budget = budget

    @property
    def effective_rate(self) -> float:
        return self._budget.effective_rate(self._clock())

    async def _grant(self) -> float:
        now = self._clock()
        wait = self._budget.delay(now)
        if wait > 0.0:
            return wait
        # No await between the check and the record: the slot cannot be lost to cancellation
        # once taken, nor taken by a cancelled waiter.
        self._budget.record(now)
        # The grant travels with the context into the task that sends it.
        _GRANT.set((self, now))
        return 0.0

    def _lower_rate(self) -> bool:
        return self._budget.on_throttled(self._clock())

    def _sent(self, granted: float) -> None:
        self._budget.sent(granted, self._clock())
