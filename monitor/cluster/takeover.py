"""Takeover over budget: the survivors spend the shared budget on a dead replica's tasks first.

When a replica dies, the hash spreads its tasks over the survivors unevenly (with two survivors,
e.g. 173 and 154 of 327), while the survivors share an account's budget about evenly: each asks
for every slot it can while its backlog is over budget. The survivor with more of the dead
replica's tasks would then need more than (their number ÷ the rate) to poll them all, though
nobody has polled them since the owner died: they are the most overdue tasks of the whole fleet.

So a survivor that has polled its own share of them and is over budget holds its requests back
until the whole set could have been polled at the account's full rate: from the takeover,
(overdue tasks of the dead replica in that account) ÷ (the rate its limiters grant at most).
Meanwhile the survivors still polling theirs get every slot. Each survivor works the figures out
alone: every one sees the same membership change and the same table, so the same count
(:meth:`~monitor.cluster.coordinator.ClusterCoordinator` ``on_orphans``), and the rate is the
configured one, an upper bound: nobody holds after the set could be done, so the shared budget is
never left unused for long and never exceeded (holding only sends less).

:class:`HeldLimiter` wraps a bucket's limiter in the scheduler and asks :class:`TakeoverHold`
before every grant; without a takeover in progress it passes straight through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from monitor.models import TaskKey
from monitor.ratelimit import RateLimiter

__all__ = ["HeldLimiter", "TakeoverHold", "max_rate"]

# How often a held request looks again (the takeover may end sooner, e.g. a later change).
_HOLD_STEP: Final = 0.1


def max_rate(limiter: RateLimiter) -> float:
    """Requests per second the limiter grants at most: the limit less the guard."""
    return limiter.limit * (1.0 - limiter.guard) / limiter.window


@dataclass(slots=True)
class _Account:
    until: float  # on the hold's clock
    pending: set[TaskKey] = field(default_factory=set)


class TakeoverHold:
    """Per account: this replica's taken tasks not yet polled, and until when it holds back."""

    __slots__ = ("_accounts", "_clock")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` must tick with the event loop's (held requests sleep on the loop)."""
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    def begin(self, account: str, *, orphaned: int, mine: Iterable[TaskKey], rate: float) -> bool:
        """A takeover in ``account``: ``orphaned`` overdue tasks lost their owner, ``mine`` are
        those this replica polls now, the account's budget grants ``rate`` per second at most.
        Returns whether this replica may hold back at all (others have some of them)."""
        pending = set(mine)
        if orphaned <= len(pending) or rate <= 0:
            self._accounts.pop(account, None)  # nobody else has any: nothing to hold for
            return False
        self._accounts[account] = _Account(self._clock() + orphaned / rate, pending)
        return True

    def polled(self, account: str, key: TaskKey) -> None:
        """A taken task was polled (or is no longer this replica's to poll)."""
        state = self._accounts.get(account)
        if state is not None:
            state.pending.discard(key)

    def end(self) -> None:
        """Membership changed again, or the replica stops: a new takeover starts from scratch."""
        self._accounts.clear()

    def wait(self, account: str) -> float:
        """Seconds this replica should still hold its requests for ``account`` back: 0 while it
        has taken tasks of its own to poll, and once the whole set could have been polled."""
        state = self._accounts.get(account)
        if state is None or state.pending:
            return 0.0
        left = state.until - self._clock()
        if left <= 0:
            del self._accounts[account]
            return 0.0
        return left

    def holding(self, account: str) -> bool:
        return account in self._accounts


class HeldLimiter:
    """A bucket's limiter that first waits out the account's takeover hold (module docstring)."""

    __slots__ = ("_account", "_clock", "_hold", "inner")

    def __init__(
        self,
        inner: RateLimiter,
        account: str,
        hold: TakeoverHold,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._account = account
        self._hold = hold
        self._clock = clock

    @property
    def key(self) -> str:
        return self.inner.key

    @property
    def limit(self) -> int:
        return self.inner.limit

    @property
    def window(self) -> float:
        return self.inner.window

    @property
    def guard(self) -> float:
        return self.inner.guard

    @property
    def effective_rate(self) -> float:
        return self.inner.effective_rate

    async def acquire(self) -> float:
        start = self._clock()
        # Polled rather than signalled: the hold ends by the clock, or when a later membership
        # change ends it, and a step of a tenth of a second is plenty against seconds of hold.
        wait = self._hold.wait(self._account)
        while wait > 0:
            await asyncio.sleep(min(wait, _HOLD_STEP))
            wait = self._hold.wait(self._account)
        await self.inner.acquire()
        return self._clock() - start

    def on_throttled(self) -> bool:
        return self.inner.on_throttled()
