"""The shared limiter: one request budget for every replica, kept in Redis
(docs/high-availability.md).

Each grant is one Lua script that reads Redis's own clock (``TIME``), never a replica's, and
applies the local limiter's rules to state every replica shares:

* a virtual schedule of slots ``1 / rate`` apart, following the previous slot while sends are
  no later than half a spacing, restarting from the send after an idle spell (no burst credit);
* the hard cap: at most ``limit`` grants in any window of ``window / (1 - guard)``, from a list
  of the last ``limit`` grant times;
* one AIMD state: a throttle seen by any replica cuts the shared rate by a fifth (at most once
  per window) and the rate climbs back by the same step per quiet window.

The constants come from :class:`~monitor.ratelimit.window.BudgetShape`, as the local
limiter's do, so both backends size their schedule alike; the script holds only the few lines
of arithmetic that must run where the state is.

Within a replica, waiters are served FIFO: the head waiter holds a lock while it asks Redis and
sleeps for the wait the script answered, so nobody overtakes it; between replicas the slot goes
to whoever asks first once it is due. The cap counts grant times (Redis's clock), not the
instants requests leave a replica: the guard's margin beyond ``window`` is the room for the
round trip and for arrival jitter. A waiter cancelled while its script is on the way may
leave its grant unused (one slot); one cancelled while it sleeps takes nothing.

While Redis cannot be reached, ``acquire`` keeps waiting (it cannot keep the shared budget,
so nothing may be sent) and retries every ``retry`` seconds; polling resumes by itself when
Redis answers again. ``available`` says which state it is in.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aredis
from redis.exceptions import RedisError

from monitor.log import get_logger
from monitor.ratelimit.base import QueuedLimiter
from monitor.ratelimit.window import DEFAULT_GUARD, BudgetShape
from monitor.store.redis.connection import COMMAND_TIMEOUT

__all__ = ["RedisRateLimiter"]

log = get_logger(__name__)

# Shared by both scripts: the clock, the state, and the effective rate (AIMD recovery).
# KEYS: state hash, grant-times list.
# ARGV: limit, configured rate, cap window, window, step, min rate, decrease, ttl (ms).
_LUA_COMMON: Final = """
local function fmt(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local configured = tonumber(ARGV[2])
local cap_window = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local step = tonumber(ARGV[5])
local min_rate = tonumber(ARGV[6])
local decrease = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local st = redis.call('HMGET', KEYS[1], 'next_slot', 'base_rate', 'decreased_at')
local next_slot = tonumber(st[1]) or -math.huge
local base = tonumber(st[2]) or configured
local decreased_at = tonumber(st[3])
local function rate_at(n)
    if not decreased_at then return configured end
    local quiet = math.floor(math.max(0, n - decreased_at) / window)
    return math.min(configured, base + quiet * step)
end
local function keep()
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
end
"""

# Returns {granted (1/0), wait seconds or grant time, effective rate}.
_LUA_GRANT: Final = (
    _LUA_COMMON
    + """
local wait = next_slot - now
-- With ``limit`` grants logged, the limit-th newest must have left the cap window.
local nth = redis.call('LINDEX', KEYS[2], -limit)
if nth then
    wait = math.max(wait, tonumber(nth) + cap_window - now)
end
if wait > 0 then
    return {0, fmt(wait), fmt(rate_at(now))}
end
redis.call('RPUSH', KEYS[2], fmt(now))
redis.call('LTRIM', KEYS[2], -limit, -1)
local spacing = 1 / rate_at(now)
if now - next_slot <= spacing / 2 then
    -- Follow the slot, not the send, so lateness under half a spacing does not accumulate.
    next_slot = next_slot + spacing
else
    -- After idle time (or a long stall) the schedule restarts: idle earns no burst.
    next_slot = now + spacing
end
redis.call('HSET', KEYS[1], 'next_slot', fmt(next_slot))
keep()
return {1, fmt(now), fmt(rate_at(now))}
"""
)

# Returns {lowered (1/0), effective rate}. At most one decrease per window: the answers to the
# requests already in flight arrive in a burst, from every replica.
_LUA_THROTTLED: Final = (
    _LUA_COMMON
    + """
if decreased_at and now - decreased_at < window then
    return {0, fmt(rate_at(now))}
end
base = math.max(min_rate, rate_at(now) * decrease)
redis.call('HSET', KEYS[1], 'base_rate', fmt(base), 'decreased_at', fmt(now))
local last = redis.call('LINDEX', KEYS[2], -1)
if last then
    -- Apply the slower spacing to the very next send, not only after it.
    next_slot = math.max(next_slot, tonumber(last) + 1 / base)
    redis.call('HSET', KEYS[1], 'next_slot', fmt(next_slot))
end
keep()
return {1, fmt(base)}
"""
)

_RETRY: Final = 1.0  # seconds between attempts while Redis does not answer


def _ttl_ms(shape: BudgetShape) -> int:
    """How long idle shared state is worth keeping: past the cap window and a full recovery.

    After that, a fresh state (full rate, empty log) is exactly what the state would say.
    """
    recovery_windows = math.ceil((shape.configured_rate - shape.min_rate) / shape.step) + 1
    seconds = 2 * shape.cap_window + recovery_windows * shape.window
    return max(10_000, math.ceil(seconds * 1000))


class RedisRateLimiter(QueuedLimiter):
    """A :class:`~monitor.ratelimit.base.RateLimiter` whose budget every replica shares."""

    __slots__ = (
        "_args",
        "_available",
        "_grant_script",
        "_keys",
        "_on_grant",
        "_rate",
        "_reported_at",
        "_retry",
        "_throttle_script",
        "_throttles",
    )

    def __init__(
        self,
        client: aredis.Redis,
        state_key: bytes,
        sends_key: bytes,
        limit: int,
        window: float,
        *,
        key: str = "",
        guard: float = DEFAULT_GUARD,
        clock: Callable[[], float] = time.monotonic,
        retry: float = _RETRY,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        """``on_grant`` is told the time of each grant on Redis's clock (seconds)."""
        shape = BudgetShape.of(limit, window, guard=guard)
        super().__init__(shape, key=key, clock=clock)
        self._keys = [state_key, sends_key]
        self._args = [
            str(shape.limit),
            repr(shape.configured_rate),
            repr(shape.cap_window),
            repr(shape.window),
            repr(shape.step),
            repr(shape.min_rate),
            repr(shape.decrease),
            str(_ttl_ms(shape)),
        ]
        self._grant_script = client.register_script(_LUA_GRANT)
        self._throttle_script = client.register_script(_LUA_THROTTLED)
        self._retry = retry
        self._rate = shape.configured_rate  # as of the last answer from Redis
        self._available = True
        self._throttles: set[asyncio.Task[None]] = set()
        self._reported_at: float | None = None
        self._on_grant = on_grant

    @property
    def effective_rate(self) -> float:
        """The shared rate as of this replica's last exchange with Redis."""
        return self._rate

    @property
    def available(self) -> bool:
        """False while Redis does not answer: nothing is granted then."""
        return self._available

    async def _call(self, script: Any) -> list[Any]:
        """Run a script until Redis answers; waits (does not fail) through an outage."""
        while True:
            try:
                # Bounded here, not by a socket timeout (see monitor.store.redis.COMMAND_TIMEOUT).
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    answer: list[Any] = await script(keys=self._keys, args=self._args)
            except (RedisError, TimeoutError) as exc:
                if self._available:
                    self._available = False
                    log.warning(
                        "ratelimit_shared_unavailable",
                        bucket=self.key,
                        error=type(exc).__name__,
                        detail="nothing is sent until Redis answers",
                    )
                await asyncio.sleep(self._retry)
                continue
            if not self._available:
                self._available = True
                log.info("ratelimit_shared_available", bucket=self.key)
            return answer

    async def _grant(self) -> float:
        granted, value, rate = await self._call(self._grant_script)
        self._rate = float(rate)
        if granted != 1:
            return float(value)
        if self._on_grant is not None:
            self._on_grant(float(value))
        return 0.0

    def _lower_rate(self) -> bool:
        """Report a throttled answer; the shared rate is cut in the background.

        The protocol is synchronous, so the answer is this replica's view: False for a throttle
        within a window of the last one it reported (the same burst, as the local limiter
        counts it, and nothing is sent), True when the report goes on to Redis, which applies
        at most one decrease per window whichever replicas report.
        """
        now = self._clock()
        if self._reported_at is not None and now - self._reported_at < self._shape.window:
            return False
        self._reported_at = now
        task = asyncio.get_running_loop().create_task(self._report_throttle())
        self._throttles.add(task)
        task.add_done_callback(self._throttles.discard)
        return True

    async def _report_throttle(self) -> None:
        _lowered, rate = await self._call(self._throttle_script)
        self._rate = float(rate)

    async def settle(self) -> None:
        """Wait for throttle reports still on their way to Redis (tests, shutdown)."""
        while self._throttles:
            await asyncio.gather(*self._throttles, return_exceptions=True)
