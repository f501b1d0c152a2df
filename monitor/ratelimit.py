"""Per-(account, access host) request budget, shared by all regions (SPEC section 6).

The server counts *arrivals* per second, so the limiter spaces sends evenly instead of letting a
burst through: a bucket that refills at the full rate while holding a full burst lets up to twice
the quota into one second (``aiolimiter.AsyncLimiter(20, 1)`` let 39 through after an idle spell).

Two mechanisms, one arithmetic core (:class:`WindowBudget`, pure: time is an argument):

* a virtual schedule in the style of GCRA: slots ``T = window / (limit * (1 - guard))`` apart.
  The next slot follows the previous *slot*, not the actual send, so timer lateness below ``T/2``
  does not accumulate (otherwise the sustained rate would sag below the limit by the mean
  lateness); after an idle spell or a longer stall the schedule restarts from the send, so
  idleness earns no credit for a burst afterwards;
* a log of the last ``limit`` actual send times, the hard cap: no window of length
  ``window / (1 - guard)`` ever holds more than ``limit`` sends, whatever the schedule,
  lateness or backoff did. The margin beyond ``window`` is room for jitter between sending and
  arriving, which is what the server counts.

On a throttled answer (other clients share the account) the rate drops by a fifth, at most once
per window because the answers to requests already in flight arrive in a burst, and then climbs
back by a few percent of the limit per window (AIMD). A fifth rather than half: a lone throttle
caused by arrival jitter should cost little, and a neighbour taking half the quota is still
matched within a few windows.

:class:`AsyncRateLimiter` wraps the core for asyncio: FIFO among waiters, and a cancelled waiter
consumes no slot and blocks nobody. :class:`RateLimiter` is the interface the scheduler and the
client depend on, so a Redis-backed budget shared by replicas can replace it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["AsyncRateLimiter", "RateLimiter", "WindowBudget"]


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
    def effective_rate(self) -> float:
        """Requests per second currently allowed, after backoff."""
        ...

    async def acquire(self) -> float:
        """Wait for permission to send one request now; return the seconds waited."""
        ...

    def on_throttled(self) -> bool:
        """Report a throttled answer; return whether the rate was lowered."""
        ...


class WindowBudget:
    """The limiter's arithmetic: evenly spaced slots, a sliding-window cap, AIMD backoff.

    Pure and single-threaded; every method takes the current time. ``delay(now)`` says how long
    to wait; after waiting, the caller checks ``delay`` again and calls ``record`` at the moment
    of the send (``record`` refuses a send that ``delay`` would not allow).
    """

    __slots__ = (
        "_base_rate",
        "_cap_window",
        "_configured_rate",
        "_decrease",
        "_decreased_at",
        "_guard",
        "_limit",
        "_min_rate",
        "_next_slot",
        "_sends",
        "_step",
        "_window",
    )

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        guard: float = 0.02,
        decrease: float = 0.8,
        min_fraction: float = 0.05,
        recovery_fraction: float = 0.05,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not window > 0:
            raise ValueError(f"window must be positive, got {window}")
        if not 0 <= guard < 1:
            raise ValueError(f"guard must be in [0, 1), got {guard}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {decrease}")
        if not 0 < min_fraction <= 1 or not 0 < recovery_fraction <= 1:
            raise ValueError("min_fraction and recovery_fraction must be in (0, 1]")
        self._limit = limit
        self._window = float(window)
        self._guard = guard
        self._decrease = decrease
        self._configured_rate = limit * (1.0 - guard) / self._window
        # The hard cap keeps the guard too: at most ``limit`` sends in any
        # ``window / (1 - guard)``, a hair less than ``limit`` spacings so that it never lands on
        # the very instant of a scheduled slot. Without it, catching up after a late wake-up
        # may pack sends right up to ``limit`` per ``window``, and the server, counting
        # arrivals, would count any jitter between sending and arriving as an excess. At the
        # default 2% and 20/s this leaves 20 ms of such jitter room.
        self._cap_window = max(self._window, self._window / (1.0 - guard) * (1.0 - 1e-9))
        # The floor keeps a trickle of requests going, so recovery is observed at all.
        self._min_rate = min(self._configured_rate, max(1.0, min_fraction * limit) / self._window)
        self._step = recovery_fraction * limit / self._window  # req/s regained per quiet window
        self._sends: deque[float] = deque(maxlen=limit)
        self._next_slot = -math.inf
        self._base_rate = self._configured_rate
        self._decreased_at: float | None = None

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    @property
    def guard(self) -> float:
        return self._guard

    @property
    def configured_rate(self) -> float:
        """Requests per second without backoff: ``limit * (1 - guard) / window``."""
        return self._configured_rate

    def effective_rate(self, now: float) -> float:
        """Requests per second allowed at ``now``, after backoff and recovery so far."""
        if self._decreased_at is None:
            return self._configured_rate
        quiet_windows = math.floor(max(0.0, now - self._decreased_at) / self._window)
        return min(self._configured_rate, self._base_rate + quiet_windows * self._step)

    def spacing(self, now: float) -> float:
        """Target seconds between sends at ``now``."""
        return 1.0 / self.effective_rate(now)

    def delay(self, now: float) -> float:
        """Seconds until a send is allowed; 0.0 when it is allowed at ``now``."""
        wait = self._next_slot - now
        if len(self._sends) == self._limit:
            # The comparison ``now >= oldest + cap window`` is written the same way in ``record``
            # so that waiting exactly ``delay`` seconds always passes it.
            cap = min(self._sends) + self._cap_window - now
            wait = max(wait, cap)
        return wait if wait > 0.0 else 0.0

    def record(self, now: float) -> None:
        """Record a send at ``now``; raises ``ValueError`` if it was not allowed."""
        if now < self._next_slot or (
            len(self._sends) == self._limit and now < min(self._sends) + self._cap_window
        ):
            raise ValueError("send recorded before the budget allowed it")
        self._sends.append(now)
        spacing = self.spacing(now)
        if now - self._next_slot <= spacing / 2.0:
            # Follow the slot, not the send, so lateness under T/2 does not accumulate.
            self._next_slot += spacing
        else:
            # After idle time (or a long stall) the schedule restarts: idle earns no burst.
            self._next_slot = now + spacing

    def sent(self, granted: float, at: float) -> bool:
        """The send granted at ``granted`` actually left at ``at``: the cap counts that.

        A request may leave a little after its grant (the event loop was busy); the server
        counts when it arrives. Moving the log entry to the real send time keeps the cap true
        for sends, not just for grants. False when that grant is no longer in the log.
        """
        for i in range(len(self._sends) - 1, -1, -1):
            if self._sends[i] == granted:
                self._sends[i] = max(granted, at)
                return True
        return False

    def on_throttled(self, now: float) -> bool:
        """Cut the rate (to the floor at worst), at most once per window.

        Returns True when the rate was lowered; False when this answer belongs to a burst
        already accounted for (another decrease within the last window).
        """
        if self._decreased_at is not None and now - self._decreased_at < self._window:
            return False
        current = self.effective_rate(now)
        self._base_rate = max(self._min_rate, current * self._decrease)
        self._decreased_at = now
        if self._sends:
            # Apply the slower spacing to the very next send, not only after it.
            self._next_slot = max(self._next_slot, self._sends[-1] + 1.0 / self._base_rate)
        return True

    def sends_in_window(self, now: float) -> int:
        """Sends recorded in the window ``(now - window, now]``."""
        return sum(1 for t in self._sends if t > now - self._window)


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
