"""Takeover over budget: the survivors spend the shared budget on a dead replica's tasks first.

When a replica dies, the hash spreads its tasks over the survivors unevenly (with two survivors,
e.g. 173 and 154 of 327), while the survivors share an account's budget about evenly (or as the
race for each slot falls): each asks for every slot it can while its backlog is over budget. The
survivor with more of the dead replica's tasks, or fewer slots, then needs more than (their
number ÷ the rate) to poll them all, though nobody has polled them since the owner died: they
are the most overdue tasks of the whole fleet.

So every survivor that still has some of them to poll says so in Redis (a *claim*, renewed while
it lasts, gone at once when it has polled them, expiring by itself if the replica dies), and a
survivor that has polled its own share, or got none, and is over budget holds its requests back
while another survivor's claim stands. The survivors still polling theirs get its slots. Holding
only sends less: the shared limit is never exceeded. A hold never outlasts twice the time the
whole set needs at the account's full rate, whatever the claims say.

Every survivor knows whether anybody else took some of them: all see the same membership change
and the same table, so the same count of the dead replica's live tasks
(:class:`~monitor.cluster.coordinator.ClusterCoordinator` ``on_orphans``); one that took them all
holds for nobody and claims nothing.

:class:`HeldLimiter` wraps a bucket's limiter in the scheduler and asks :class:`TakeoverHold`
before every grant; without a takeover in progress it passes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aredis
from redis.exceptions import RedisError

from monitor.log import get_logger
from monitor.models import TaskKey
from monitor.ratelimit import RateLimiter
from monitor.ratelimit.factory import BucketKey
from monitor.registry import TaskRegistry
from monitor.scheduler import PollScheduler
from monitor.store.redis.connection import RedisKeys

__all__ = ["HeldLimiter", "TakeoverClaims", "TakeoverHold", "max_rate", "share_takeover"]

log = get_logger(__name__)

# How often a held request looks again at the claims.
HOLD_STEP: Final = 0.1
# A claim lasts this long unless renewed; renewed every third of it while tasks are pending.
CLAIM_TTL: Final = 3.0
# A survivor finding no claim this soon after the takeover began may be ahead of the others,
# which are still reloading their share from the store: it holds on until then.
CLAIM_GRACE: Final = 2.0

# KEYS: the account's claims (a sorted set: replica id -> expiry, ms on Redis's clock).
# ARGV: replica id, "claim" / "release" / "look", ttl (ms). Returns how many *other* replicas
# hold a live claim.
_LUA_CLAIMS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[3])
if ARGV[2] == 'claim' then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl * 2)
elseif ARGV[2] == 'release' then
    redis.call('ZREM', KEYS[1], ARGV[1])
end
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then n = n - 1 end
return n
"""


def max_rate(limiter: RateLimiter) -> float:
    """Requests per second the limiter grants at most: the limit less the guard."""
    return limiter.limit * (1.0 - limiter.guard) / limiter.window


class TakeoverClaims:
    """The survivors' claims in Redis, per account (module docstring)."""

    __slots__ = ("_client", "_keys", "_script", "_ttl_ms", "replica_id")

    def __init__(
        self,
        client: aredis.Redis,
        keys: RedisKeys,
        replica_id: str,
        *,
        ttl: float = CLAIM_TTL,
    ) -> None:
        self._client = client
        self._keys = keys
        self.replica_id = replica_id
        self._ttl_ms = str(max(1, round(ttl * 1000)))
        self._script: Any = client.register_script(_LUA_CLAIMS)

    async def _call(self, account: str, verb: str) -> int:
        answer = await self._script(
            keys=[self._keys.takeover_claims(account)], args=[self.replica_id, verb, self._ttl_ms]
        )
        return int(answer)

    async def claim(self, account: str) -> int:
        """This replica still has taken tasks of ``account`` to poll; returns the others' claims."""
        return await self._call(account, "claim")

    async def release(self, account: str) -> int:
        return await self._call(account, "release")

    async def others(self, account: str) -> int:
        """How many other replicas still have taken tasks of ``account`` to poll."""
        return await self._call(account, "look")


@dataclass(slots=True)
class _Account:
    began: float  # on the hold's clock
    until: float  # the longest a hold may last
    holds: bool  # over budget: may hold its requests back once its own share is polled
    pending: set[TaskKey] = field(default_factory=set)


class TakeoverHold:
    """Per account: this replica's taken tasks not yet polled, and whether it holds back."""

    __slots__ = ("_accounts", "_claiming", "_claims", "_clock")

    def __init__(
        self, claims: TakeoverClaims | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock`` must tick with the event loop's (held requests sleep on the loop). Without
        ``claims`` a hold lasts until (the orphaned tasks ÷ the rate) from the takeover."""
        self._claims = claims
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._claiming: set[asyncio.Task[None]] = set()

    def begin(
        self,
        account: str,
        *,
        orphaned: int,
        mine: Iterable[TaskKey],
        rate: float,
        over_budget: bool = True,
    ) -> bool:
        """A takeover in ``account``: ``orphaned`` live tasks lost their owner, ``mine`` are
        those this replica polls now, the account's budget grants ``rate`` per second at most.
        Returns whether others took some of them (then this replica tracks its share, claims it
        while it lasts, and holds back once it is polled if ``over_budget``)."""
        pending = set(mine)
        if orphaned <= len(pending) or rate <= 0:
            self._accounts.pop(account, None)  # nobody else has any: nothing to hold for
            return False
        now = self._clock()
        # Without claims to say when the others are done: as long as the whole set needs at the
        # full rate. With them, at most twice that: a claim that is never released (a task never
        # polled) cannot hold this replica back for long.
        span = orphaned / rate * (1.0 if self._claims is None else 2.0)
        self._accounts[account] = _Account(now, now + span, over_budget, pending)
        return True

    def pending(self, account: str) -> bool:
        """Whether this replica still has taken tasks of ``account`` to poll (and claims them)."""
        state = self._accounts.get(account)
        return state is not None and bool(state.pending) and self._clock() < state.until

    def polled(self, account: str, key: TaskKey) -> None:
        """A taken task was polled (or is no longer this replica's to poll)."""
        state = self._accounts.get(account)
        if state is not None:
            state.pending.discard(key)

    def end(self) -> None:
        """Membership changed again, or the replica stops: a new takeover starts from scratch."""
        self._accounts.clear()

    def wait(self, account: str) -> float:
        """The longest this replica may still hold its requests for ``account`` back: 0 while it
        has taken tasks of its own to poll, when it is not over budget, and once the hold's
        bound has passed."""
        state = self._accounts.get(account)
        if state is None or not state.holds or state.pending:
            return 0.0
        left = state.until - self._clock()
        if left <= 0:
            del self._accounts[account]
            return 0.0
        return left

    async def others_busy(self, account: str) -> bool:
        """While holding: whether another survivor still has taken tasks to poll. False ends the
        hold (without claims, the hold lasts its whole bound)."""
        if self._claims is None:
            return True
        try:
            busy = await self._claims.others(account) > 0
        except (RedisError, TimeoutError):
            busy = False  # cannot tell: send, as without a takeover
        state = self._accounts.get(account)
        if not busy and state is not None and self._clock() - state.began >= CLAIM_GRACE:
            del self._accounts[account]  # everybody is done: no more asking
            return False
        return busy or state is not None

    def claim_in_background(self, account: str) -> None:
        """Keep this replica's claim on ``account`` (``keep_claim``) until :meth:`stop`."""
        claim = asyncio.get_running_loop().create_task(self.keep_claim(account))
        self._claiming.add(claim)
        claim.add_done_callback(self._claiming.discard)

    async def stop(self) -> None:
        """End every hold and the claims kept in the background."""
        self.end()
        for claim in list(self._claiming):
            claim.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim

    async def keep_claim(self, account: str) -> None:
        """Claim this replica's share in Redis while it lasts, then release it at once."""
        claims = self._claims
        if claims is None:
            return
        renewed = -CLAIM_TTL
        try:
            while self.pending(account):
                now = self._clock()
                if now - renewed >= CLAIM_TTL / 3:
                    await claims.claim(account)
                    renewed = now
                await asyncio.sleep(HOLD_STEP)
        except (RedisError, TimeoutError) as exc:
            log.warning("cluster_takeover_claim_failed", account=account, error=type(exc).__name__)
        finally:
            with contextlib.suppress(RedisError, TimeoutError):  # else it expires by itself
                await claims.release(account)


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
        # Polled rather than signalled: the others' claims are in Redis, and a step of a tenth
        # of a second is plenty against seconds of hold.
        wait = self._hold.wait(self._account)
        while wait > 0 and await self._hold.others_busy(self._account):
            await asyncio.sleep(min(wait, HOLD_STEP))
            wait = self._hold.wait(self._account)
        await self.inner.acquire()
        return self._clock() - start

    def on_throttled(self) -> bool:
        return self.inner.on_throttled()


def share_takeover(
    hold: TakeoverHold,
    scheduler: PollScheduler[TaskKey],
    registry: TaskRegistry,
    orphans: dict[str, int],
    owned: Sequence[TaskKey],
    replica_id: str,
) -> None:
    """A dead replica's live tasks, ``orphans`` by account, went to the survivors, this
    one's among ``owned``: claim them while they last, and over budget hold this replica's
    requests back once they are polled (module docstring)."""
    for account, orphaned in orphans.items():
        # All of them go ahead of the backlog over budget (PollScheduler.take_over).
        mine = []
        for key in owned:
            task = registry.get(key)
            if task is not None and task.account == account:
                mine.append(key)
        buckets = [
            b for b in scheduler.buckets if isinstance(b, BucketKey) and b.account == account
        ]
        rates = {b: max_rate(scheduler.limiter(b)) for b in buckets}
        # Over budget: more than a second of the backlog is due and waiting. Under budget
        # every survivor's share of the rate is spare, and holding would only delay.
        over = any(scheduler.due_count(b) > rate for b, rate in rates.items())
        rate = sum(rates.values())
        if not hold.begin(account, orphaned=orphaned, mine=mine, rate=rate, over_budget=over):
            continue
        if mine:
            hold.claim_in_background(account)
        if over:
            for bucket in buckets:
                limiter = scheduler.limiter(bucket)
                if not isinstance(limiter, HeldLimiter):
                    scheduler.add_bucket(bucket, HeldLimiter(limiter, account, hold))
        log.info(
            "cluster_takeover_shared",
            replica=replica_id,
            account=account,
            orphaned=orphaned,
            mine=len(mine),
            holds=over,
        )
