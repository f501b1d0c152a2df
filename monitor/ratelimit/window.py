"""The limiter's arithmetic (pure: time is an argument), shared by every limiter backend.

See :mod:`monitor.ratelimit` for why sends are spaced evenly and capped on actual send times.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TypedDict, Unpack

__all__ = [
    "DEFAULT_DECREASE",
    "DEFAULT_GUARD",
    "DEFAULT_MIN_FRACTION",
    "DEFAULT_RECOVERY_FRACTION",
    "BudgetShape",
    "Tuning",
    "WindowBudget",
    "recovered_rate",
]

DEFAULT_GUARD = 0.02
# A throttle cuts the rate by a fifth (see monitor.ratelimit for why not by half).
DEFAULT_DECREASE = 0.8
DEFAULT_MIN_FRACTION = 0.05
DEFAULT_RECOVERY_FRACTION = 0.05


class Tuning(TypedDict, total=False):
    """The optional settings of :meth:`BudgetShape.of`, for those that pass them on to it."""

    guard: float  # fraction of the limit kept unused against arrival jitter
    decrease: float  # a throttle multiplies the rate by this
    min_fraction: float  # the backoff's floor, as a fraction of the limit
    recovery_fraction: float  # regained per quiet window, as a fraction of the limit


@dataclass(frozen=True, slots=True)
class BudgetShape:
    """The constants every limiter backend derives from its settings, in one place.

    The local :class:`WindowBudget` and the shared Redis limiter both compute their schedule
    from these, so the two cannot drift apart.
    """

    limit: int
    window: float
    guard: float
    decrease: float
    configured_rate: float  # requests per second without backoff
    cap_window: float  # no more than ``limit`` sends in any window this long
    min_rate: float  # the floor of the backoff
    step: float  # requests per second regained per quiet window

    @classmethod
    def of(
        cls,
        limit: int,
        window: float,
        *,
        guard: float = DEFAULT_GUARD,
        decrease: float = DEFAULT_DECREASE,
        min_fraction: float = DEFAULT_MIN_FRACTION,
        recovery_fraction: float = DEFAULT_RECOVERY_FRACTION,
    ) -> BudgetShape:
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
        window = float(window)
        configured_rate = limit * (1.0 - guard) / window
        return cls(
            limit=limit,
            window=window,
            guard=guard,
            decrease=decrease,
            configured_rate=configured_rate,
            # The hard cap keeps the guard too: at most ``limit`` sends in any
            # ``window / (1 - guard)``, a hair less than ``limit`` spacings so that it never
            # lands on the very instant of a scheduled slot. Without it, catching up after a
            # late wake-up may pack sends right up to ``limit`` per ``window``, and the server,
            # counting arrivals, would count any jitter between sending and arriving as an
            # excess. At the default 2% and 20/s this leaves 20 ms of such jitter room.
            cap_window=max(window, window / (1.0 - guard) * (1.0 - 1e-9)),
            # The floor keeps a trickle of requests going, so recovery is observed at all.
            min_rate=min(configured_rate, max(1.0, min_fraction * limit) / window),
            step=recovery_fraction * limit / window,
        )


def recovered_rate(shape: BudgetShape, base_rate: float, decreased_at: float, now: float) -> float:
    """The rate at ``now`` after a decrease to ``base_rate`` at ``decreased_at`` (AIMD)."""
    quiet_windows = math.floor(max(0.0, now - decreased_at) / shape.window)
    return min(shape.configured_rate, base_rate + quiet_windows * shape.step)


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
        "_first",
        "_limit",
        "_min_rate",
        "_mins",
        "_next_slot",
        "_sends",
        "_shape",
        "_window",
    )

    def __init__(self, limit: int, window: float, **tuning: Unpack[Tuning]) -> None:
        shape = BudgetShape.of(limit, window, **tuning)
        self._shape = shape
        # The figures the hot paths read, as attributes of their own.
        self._limit = limit
        self._window = shape.window
        self._decrease = shape.decrease
        self._configured_rate = shape.configured_rate
        self._cap_window = shape.cap_window
        self._min_rate = shape.min_rate
        self._sends: deque[float] = deque(maxlen=limit)
        # The cap needs the earliest send in the log at every grant. A scan would cost
        # ``limit`` steps per grant; instead ``_mins`` holds the log's suffix minima, as
        # (position, time) with both increasing: its head is the earliest send. Positions count
        # every send ever recorded; ``_first`` is the position of ``_sends[0]``.
        self._mins: deque[tuple[int, float]] = deque()
        self._first = 0
        self._next_slot = -math.inf
        self._base_rate = self._configured_rate
        self._decreased_at: float | None = None

    @property
    def shape(self) -> BudgetShape:
        """The figures this budget is sized by."""
        return self._shape

    def effective_rate(self, now: float) -> float:
        """Requests per second allowed at ``now``, after backoff and recovery so far."""
        if self._decreased_at is None:
            return self._configured_rate
        return recovered_rate(self._shape, self._base_rate, self._decreased_at, now)

    def spacing(self, now: float) -> float:
        """Target seconds between sends at ``now``."""
        return 1.0 / self.effective_rate(now)

    def delay(self, now: float) -> float:
        """Seconds until a send is allowed; 0.0 when it is allowed at ``now``."""
        wait = self._next_slot - now
        if len(self._sends) == self._limit:
            # The comparison ``now >= oldest + cap window`` is written the same way in ``record``
            # so that waiting exactly ``delay`` seconds always passes it.
            cap = self._mins[0][1] + self._cap_window - now
            wait = max(wait, cap)
        return wait if wait > 0.0 else 0.0

    def record(self, now: float) -> None:
        """Record a send at ``now``; raises ``ValueError`` if it was not allowed."""
        if now < self._next_slot or (
            len(self._sends) == self._limit and now < self._mins[0][1] + self._cap_window
        ):
            raise ValueError("send recorded before the budget allowed it")
        if len(self._sends) == self._limit:
            # The oldest send leaves the log (the deque drops it on append).
            if self._mins[0][0] == self._first:
                self._mins.popleft()
            self._first += 1
        self._sends.append(now)
        self._push_min(self._first + len(self._sends) - 1, now)
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
                if at > granted:
                    self._sends[i] = at
                    self._moved_later(self._first + i)
                return True
        return False

    def _push_min(self, position: int, at: float) -> None:
        mins = self._mins
        while mins and mins[-1][1] >= at:
            mins.pop()
        mins.append((position, at))

    def _moved_later(self, position: int) -> None:
        """The send at ``position`` now has a later time: mend the suffix minima.

        Entries after the last minimum before ``position`` are pushed again; receipts come
        shortly after their grants, so that is the newest entry or two, not the whole log.
        """
        mins = self._mins
        while mins and mins[-1][0] >= position:
            mins.pop()
        start = mins[-1][0] + 1 if mins else self._first
        sends = self._sends
        for p in range(start, self._first + len(sends)):
            self._push_min(p, sends[p - self._first])

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
