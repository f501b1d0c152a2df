"""Per-(account, access host) request budget, shared by all regions (docs/polling.md).

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

:class:`RateLimiter` is the interface the scheduler and the client depend on. Two backends
implement it on one waiting loop (:class:`~monitor.ratelimit.base.QueuedLimiter`: FIFO among
waiters, a cancelled waiter consumes no slot and blocks nobody): :class:`LocalRateLimiter`
wraps the core for one process, :class:`~monitor.ratelimit.redis.RedisRateLimiter` keeps the
same rules in Redis for replicas that share a budget. :mod:`monitor.ratelimit.factory` chooses.
"""

from monitor.ratelimit.base import RateLimiter
from monitor.ratelimit.local import LocalRateLimiter, mark_sent
from monitor.ratelimit.window import WindowBudget

__all__ = ["LocalRateLimiter", "RateLimiter", "WindowBudget", "mark_sent"]
