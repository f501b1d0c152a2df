"""Polling scheduler: a deadline heap per budget, drained by one dispatcher gated by its limiter.

Why not one APScheduler job per task (SPEC section 6): its memory job store is a sorted list
(O(n) per reschedule), all due jobs run in one synchronous callback, and 100,000 jobs due at once
blocked the loop for seconds and were skipped as misfired. Here each bucket (one rate limiter,
i.e. one (account, access host)) has a binary heap of ``(due, seq, entry)`` tuples and one
dispatcher coroutine that sleeps until the earliest due time, waits for the limiter, and only
then pops the heap top and starts the poll.

Ordering and fairness. The heap is ordered by due time, so when the budget cannot serve every
due poll the most overdue task goes first. A task is pushed back only when its poll finishes,
with ``due = finish + interval * (1 ± jitter)``; a newly added task is due *now*. Both sort after
every task that has been overdue since earlier, so under overload the service order becomes a
rotation: each task waits for at most the tasks that were due before it, and staleness spreads
evenly (about ``tasks / rate`` for everyone) instead of some tasks starving. Equal due times go
in insertion order (``seq``).

Invariants:
* at most one poll per task in flight: a task is not in the heap while its poll runs; a
  reschedule asked for meanwhile is remembered and applied when the poll returns;
* a token is acquired only when a task is due, and the heap is popped only once the token is
  granted, so a task added meanwhile with an earlier due time still goes first;
* removal and rescheduling are lazy (O(log n)): the old heap tuple stays behind and is skipped
  because its ``seq`` no longer matches the entry's; the heap is compacted when stale tuples
  outnumber live ones;
* the scheduler never dies: a poll that raises is logged and the task rescheduled.

:class:`DeadlineQueue` holds all of that bookkeeping and is pure (time and randomness are
arguments); :class:`PollScheduler` is the asyncio shell around it.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import math
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import structlog

from monitor.ratelimit import RateLimiter

__all__ = [
    "DeadlineQueue",
    "Dispatch",
    "PollAction",
    "PollOutcome",
    "PollScheduler",
    "jittered",
]

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)

# Compact a bucket's heap once it holds at least this many stale tuples and they outnumber the
# live ones: amortised O(1) per lazy deletion, memory bounded by twice the live size.
_COMPACT_MIN_STALE = 256


def jittered(interval: float, jitter: float, u: float) -> float:
    """``interval`` spread by ``jitter`` (a fraction); ``u`` in [-1, 1] picks the point."""
    return interval * (1.0 + jitter * u)


@dataclass(slots=True, eq=False)
class _Flight:
    """A poll in flight; allocated per poll so that idle entries stay small."""

    bucket: Hashable  # whose dispatcher started it: its in-flight count is released on return
    due: float = 0.0  # the due time it was dispatched for: a retry goes back to it
    pending: float | None = None  # earliest due asked for meanwhile
    removed: bool = False  # removed meanwhile: dropped when the poll returns


@dataclass(slots=True, eq=False)
class _Entry(Generic[K]):
    key: K
    bucket: Hashable
    interval: float
    due: float = 0.0  # shares the float object of the heap tuple
    seq: int = -1  # seq of the live heap tuple; -1 while not queued
    flight: _Flight | None = None


_Item = tuple[float, int, _Entry[K]]


@dataclass(slots=True, eq=False)
class _BucketState(Generic[K]):
    heap: list[_Item[K]] = field(default_factory=list)
    intervals: dict[float, int] = field(default_factory=dict)  # interval -> tasks with it
    tasks: int = 0
    in_flight: int = 0
    stale: int = 0


class DeadlineQueue(Generic[K]):
    """Pure scheduling state: per-bucket deadline heaps, in-flight marks, required rates."""

    __slots__ = ("_buckets", "_entries", "_jitter", "_rng", "_seq")

    def __init__(self, *, jitter: float = 0.1, rng: random.Random | None = None) -> None:
        _check_jitter(jitter)
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._entries: dict[K, _Entry[K]] = {}
        self._buckets: dict[Hashable, _BucketState[K]] = {}
        self._seq = 0

    @property
    def jitter(self) -> float:
        return self._jitter

    @jitter.setter
    def jitter(self, jitter: float) -> None:
        _check_jitter(jitter)
        self._jitter = jitter

    # -- buckets ---------------------------------------------------------------------------

    def add_bucket(self, bucket: Hashable) -> None:
        self._buckets.setdefault(bucket, _BucketState())

    @property
    def buckets(self) -> tuple[Hashable, ...]:
        return tuple(self._buckets)

    # -- tasks -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(b.tasks for b in self._buckets.values())

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(cast("K", key))
        return entry is not None and not _removed(entry)

    def bucket_of(self, key: K) -> Hashable | None:
        entry = self._live(key)
        return None if entry is None else entry.bucket

    def interval_of(self, key: K) -> float | None:
        entry = self._live(key)
        return None if entry is None else entry.interval

    def due_of(self, key: K) -> float | None:
        """When the task is next due; None when unknown or while its poll is in flight."""
        entry = self._live(key)
        return None if entry is None or entry.seq < 0 else entry.due

    def is_in_flight(self, key: K) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.flight is not None

    def add(self, key: K, bucket: Hashable, interval: float, due: float) -> bool:
        """Schedule a new task, due at ``due``; False (and no change) if already scheduled."""
        _check_interval(interval)
        state = self._bucket(bucket)
        entry = self._entries.get(key)
        if entry is not None and entry.flight is not None and entry.flight.removed:
            # Removed while its poll is in flight: revive it, and keep the one-in-flight rule
            # by letting the poll return before the new schedule starts.
            entry.flight.removed = False
            entry.flight.pending = due
            entry.bucket = bucket
            entry.interval = interval
            self._count(entry, state, +1)
            return True
        if entry is not None:
            return False
        entry = _Entry(key, bucket, interval)
        self._entries[key] = entry
        self._count(entry, state, +1)
        self._push(entry, state, due)
        return True

    def remove(self, key: K) -> bool:
        """Stop scheduling a task; False if it was not scheduled. O(1): the heap is lazy."""
        entry = self._live(key)
        if entry is None:
            return False
        state = self._buckets[entry.bucket]
        self._count(entry, state, -1)
        if entry.flight is not None:
            entry.flight.removed = True
            entry.flight.pending = None
            return True
        del self._entries[key]
        self._drop_queued(entry, state)
        return True

    def update_interval(self, key: K, interval: float, now: float) -> bool:
        """Change a task's interval; a shorter one also pulls its next due time in."""
        _check_interval(interval)
        entry = self._live(key)
        if entry is None:
            return False
        state = self._buckets[entry.bucket]
        self._count(entry, state, -1)
        entry.interval = interval
        self._count(entry, state, +1)
        if entry.seq >= 0 and now + interval < entry.due:
            self._drop_queued(entry, state)
            self._push(entry, state, now + interval)
        return True

    def reschedule(self, key: K, due: float) -> bool:
        """Poll the task no later than ``due`` (never postpones); applied after an in-flight poll.

        False if the task is not scheduled.
        """
        entry = self._live(key)
        if entry is None:
            return False
        flight = entry.flight
        if flight is not None:
            flight.pending = due if flight.pending is None else min(flight.pending, due)
        elif due < entry.due:
            state = self._buckets[entry.bucket]
            self._drop_queued(entry, state)
            self._push(entry, state, due)
        return True

    def retry(self, key: K) -> bool:
        """Asked during the task's poll: queue it again at the due time that poll had.

        A throttled poll was no fault of the task; sent to the back of the queue it would wait
        a whole rotation when the budget is short. False when no poll of it is in flight.
        """
        entry = self._live(key)
        if entry is None or entry.flight is None:
            return False
        flight = entry.flight
        flight.pending = flight.due if flight.pending is None else min(flight.pending, flight.due)
        return True

    # -- dispatching -----------------------------------------------------------------------

    def next_due(self, bucket: Hashable) -> float | None:
        """The earliest due time in the bucket, or None when nothing is queued."""
        state = self._bucket(bucket)
        heap = state.heap
        while heap and heap[0][1] != heap[0][2].seq:
            heapq.heappop(heap)
            state.stale -= 1
        return heap[0][0] if heap else None

    def pop_due(self, bucket: Hashable, now: float) -> tuple[K, float] | None:
        """Take the most overdue task (key, due) if one is due at ``now``; mark it in flight."""
        due = self.next_due(bucket)
        if due is None or due > now:
            return None
        state = self._buckets[bucket]
        _, _, entry = heapq.heappop(state.heap)
        entry.seq = -1
        entry.flight = _Flight(bucket, due)
        state.in_flight += 1
        return entry.key, due

    def finish(self, key: K, now: float) -> Hashable | None:
        """The poll of ``key`` returned at ``now``: queue its next poll.

        Next due is ``now + interval * (1 ± jitter)``, or earlier if a reschedule asked for it.
        Returns the bucket it was queued in, or None when the task was removed meanwhile.
        """
        entry = self._entries.get(key)
        flight = None if entry is None else entry.flight
        if entry is None or flight is None:
            raise ValueError(f"no poll in flight for {key!r}")
        self._buckets[flight.bucket].in_flight -= 1
        entry.flight = None
        if flight.removed:
            del self._entries[key]
            return None
        due = now + jittered(entry.interval, self._jitter, self._rng.uniform(-1.0, 1.0))
        if flight.pending is not None:
            due = min(due, flight.pending)
        self._push(entry, self._buckets[entry.bucket], due)
        return entry.bucket

    # -- figures ---------------------------------------------------------------------------

    def required_rate(self, bucket: Hashable) -> float:
        """Polls per second the bucket's tasks need: the sum of 1/interval."""
        intervals = self._bucket(bucket).intervals
        return math.fsum(count / interval for interval, count in intervals.items())

    def task_count(self, bucket: Hashable) -> int:
        return self._bucket(bucket).tasks

    def in_flight(self, bucket: Hashable) -> int:
        return self._bucket(bucket).in_flight

    def due_count(self, bucket: Hashable, now: float) -> int:
        """Tasks due at ``now`` and waiting; O(number due), not O(tasks)."""
        heap = self._bucket(bucket).heap
        count = 0
        stack = [0] if heap else []
        while stack:
            i = stack.pop()
            due, seq, entry = heap[i]
            if due > now:
                continue  # the heap property: nothing below is due either
            if seq == entry.seq:
                count += 1
            stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
        return count

    # -- internals -------------------------------------------------------------------------

    def _bucket(self, bucket: Hashable) -> _BucketState[K]:
        try:
            return self._buckets[bucket]
        except KeyError:
            raise KeyError(f"unknown bucket {bucket!r}") from None

    def _live(self, key: K) -> _Entry[K] | None:
        entry = self._entries.get(key)
        return None if entry is None or _removed(entry) else entry

    def _push(self, entry: _Entry[K], state: _BucketState[K], due: float) -> None:
        self._seq += 1
        entry.seq = self._seq
        entry.due = due
        heapq.heappush(state.heap, (due, self._seq, entry))

    def _drop_queued(self, entry: _Entry[K], state: _BucketState[K]) -> None:
        if entry.seq < 0:
            return
        entry.seq = -1
        state.stale += 1
        if state.stale >= _COMPACT_MIN_STALE and 2 * state.stale > len(state.heap):
            state.heap = [item for item in state.heap if item[1] == item[2].seq]
            heapq.heapify(state.heap)
            state.stale = 0

    @staticmethod
    def _count(entry: _Entry[K], state: _BucketState[K], sign: int) -> None:
        state.tasks += sign
        left = state.intervals.get(entry.interval, 0) + sign
        if left:
            state.intervals[entry.interval] = left
        else:
            del state.intervals[entry.interval]


def _removed(entry: _Entry[K]) -> bool:
    return entry.flight is not None and entry.flight.removed


def _check_jitter(jitter: float) -> None:
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


def _check_interval(interval: float) -> None:
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"interval must be a positive number of seconds, got {interval}")


class PollAction(enum.Enum):
    """What the scheduler does with a task once its poll returns."""

    NEXT = "next"  # due again one interval after this poll
    RETRY = "retry"  # due again at the time this poll was due for (a throttled answer)
    STOP = "stop"  # no longer polled (the task ended)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """A poll's answer to the scheduler: the poll never calls the scheduler itself."""

    action: PollAction = PollAction.NEXT
    interval: float | None = None  # the task's interval from now on, when it changed


@dataclass(frozen=True, slots=True)
class Dispatch(Generic[K]):
    """One poll started: what the daemon feeds the poll-delay and limiter-wait histograms."""

    bucket: Hashable
    key: K
    due: float
    at: float
    limiter_wait: float

    @property
    def delay(self) -> float:
        """How late the poll started after its due time, in seconds."""
        return self.at - self.due


@dataclass(slots=True, eq=False)
class _Lane:
    """A bucket's asyncio side: its limiter, in-flight bound and dispatcher."""

    name: Hashable
    limiter: RateLimiter
    max_in_flight: int
    waiter: asyncio.Future[None] | None = None
    task: asyncio.Task[None] | None = None


class PollScheduler(Generic[K]):
    """Polls every task at its interval through its bucket's limiter, most overdue first.

    ``poll(key)`` performs one poll (API call and recording the result) and returns a
    :class:`PollOutcome` (or None: next due one interval later); it may raise, which is logged
    and treated as ``NEXT``. A bucket is declared with :meth:`add_bucket`, or made on first
    use with the limiter ``limiter_for(bucket)`` returns. ``on_dispatch`` is called
    synchronously for every poll started. ``clock`` must tick with the event loop's clock
    (the default, ``time.monotonic``, does); callers speak in delays (``due_in``), so they
    never need that clock themselves.
    """

    def __init__(
        self,
        poll: Callable[[K], Awaitable[PollOutcome | None]],
        *,
        limiter_for: Callable[[Any], RateLimiter] | None = None,
        max_in_flight: int = 32,
        jitter: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_dispatch: Callable[[Dispatch[K]], None] | None = None,
        stop_timeout: float = 5.0,
        error_pause: float = 1.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._poll = poll
        self._limiter_for = limiter_for
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._queue: DeadlineQueue[K] = DeadlineQueue(jitter=jitter, rng=rng)
        self._on_dispatch = on_dispatch
        self._stop_timeout = stop_timeout
        self._error_pause = error_pause
        self._lanes: dict[Hashable, _Lane] = {}
        self._polls: set[asyncio.Task[None]] = set()
        self._running = False
        self._stopped: asyncio.Event | None = None

    # -- configuration ---------------------------------------------------------------------

    def add_bucket(
        self, bucket: Hashable, limiter: RateLimiter, *, max_in_flight: int | None = None
    ) -> None:
        """Declare a bucket, or replace its limiter and in-flight bound (e.g. on reload)."""
        if max_in_flight is None:
            max_in_flight = self._max_in_flight
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        lane = self._lanes.get(bucket)
        if lane is None:
            self._queue.add_bucket(bucket)
            lane = self._lanes[bucket] = _Lane(bucket, limiter, max_in_flight)
            if self._running:
                self._start_lane(lane)
        else:
            lane.limiter = limiter
            lane.max_in_flight = max_in_flight
            self._wake(lane)

    @property
    def buckets(self) -> tuple[Hashable, ...]:
        return tuple(self._lanes)

    def limiter(self, bucket: Hashable) -> RateLimiter:
        return self._lanes[bucket].limiter

    @property
    def jitter(self) -> float:
        return self._queue.jitter

    @jitter.setter
    def jitter(self, jitter: float) -> None:
        """Applies from the next poll that returns."""
        self._queue.jitter = jitter

    # -- tasks -----------------------------------------------------------------------------

    def add(self, key: K, bucket: Hashable, interval: float, *, due_in: float = 0.0) -> bool:
        """Schedule a task, due in ``due_in`` seconds (default: now, polled as soon as the budget
        allows). A negative ``due_in`` means overdue for that long, so on a restart the longest
        unobserved tasks can be put first. Returns False, changing nothing, when the task is
        already scheduled.
        """
        if bucket not in self._lanes:
            if self._limiter_for is None:
                raise KeyError(f"unknown bucket {bucket!r}")
            self.add_bucket(bucket, self._limiter_for(bucket))
        before = self._queue.next_due(bucket)
        added = self._queue.add(key, bucket, interval, self._clock() + due_in)
        self._nudge(bucket, before)
        return added

    def remove(self, key: K) -> bool:
        """Stop polling a task (an in-flight poll completes); False if it was not scheduled."""
        return self._queue.remove(key)

    def update_interval(self, key: K, interval: float) -> bool:
        bucket = self._queue.bucket_of(key)
        if bucket is None:
            return False
        before = self._queue.next_due(bucket)
        self._queue.update_interval(key, interval, self._clock())
        self._nudge(bucket, before)
        return True

    def reschedule(self, key: K, due_in: float = 0.0) -> bool:
        """Poll the task within ``due_in`` seconds (default now), e.g. to confirm a callback or
        to retry a throttled poll. Never postpones. Asked during the task's own poll, it applies
        when that poll returns. False if the task is not scheduled.
        """
        bucket = self._queue.bucket_of(key)
        if bucket is None:
            return False
        before = self._queue.next_due(bucket)
        self._queue.reschedule(key, self._clock() + due_in)
        self._nudge(bucket, before)
        return True

    def retry(self, key: K) -> bool:
        """Called from within the task's own poll: poll it again in the place it had (its old
        due time) instead of after a full interval, e.g. after a throttled answer."""
        return self._queue.retry(key)

    def __contains__(self, key: object) -> bool:
        return key in self._queue

    def __len__(self) -> int:
        return len(self._queue)

    def interval_of(self, key: K) -> float | None:
        return self._queue.interval_of(key)

    def due_of(self, key: K) -> float | None:
        """Next due time in the scheduler's clock; None if unknown or while being polled."""
        return self._queue.due_of(key)

    # -- figures ---------------------------------------------------------------------------

    def required_rate(self, bucket: Hashable) -> float:
        """Requests per second the bucket's tasks need (sum of 1/interval)."""
        return self._queue.required_rate(bucket)

    def task_count(self, bucket: Hashable) -> int:
        return self._queue.task_count(bucket)

    def due_count(self, bucket: Hashable) -> int:
        """Tasks due now and waiting for the budget or an in-flight slot."""
        return self._queue.due_count(bucket, self._clock())

    def in_flight(self, bucket: Hashable) -> int:
        return self._queue.in_flight(bucket)

    # -- running ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start one dispatcher per bucket; needs a running event loop. Idempotent."""
        if self._running:
            return
        self._running = True
        self._stopped = asyncio.Event()
        for lane in self._lanes.values():
            self._start_lane(lane)

    async def run(self) -> None:
        """Start, then wait until :meth:`stop`; cancelling ``run`` stops the scheduler."""
        self.start()
        stopped = self._stopped
        assert stopped is not None
        try:
            await stopped.wait()
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def stop(self, grace: float | None = None) -> None:
        """Stop dispatching; wait up to ``grace`` seconds (default ``stop_timeout``) for polls
        in flight, then cancel them."""
        self._running = False
        dispatchers = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for lane in self._lanes.values():
            lane.task = None
        for task in dispatchers:
            task.cancel()
        await asyncio.gather(*dispatchers, return_exceptions=True)
        polls = set(self._polls)
        if polls:
            wait = self._stop_timeout if grace is None else grace
            _, late = await asyncio.wait(polls, timeout=wait)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("polls_cancelled_on_stop", count=len(late))
        if self._stopped is not None:
            self._stopped.set()

    # -- internals -------------------------------------------------------------------------

    def _start_lane(self, lane: _Lane) -> None:
        lane.task = asyncio.get_running_loop().create_task(
            self._dispatch(lane), name=f"poll-dispatcher:{lane.name}"
        )

    def _nudge(self, bucket: Hashable, before: float | None) -> None:
        # Only an earlier head changes what the dispatcher is sleeping for.
        after = self._queue.next_due(bucket)
        if after is not None and (before is None or after < before):
            self._wake(self._lanes[bucket])

    @staticmethod
    def _wake(lane: _Lane) -> None:
        waiter = lane.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, lane: _Lane, delay: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        lane.waiter = waiter
        timer = None if delay is None else loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            lane.waiter = None
            if timer is not None:
                timer.cancel()

    async def _dispatch(self, lane: _Lane) -> None:
        while True:
            try:
                await self._dispatch_next(lane)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failing limiter must not end polling for the bucket; pause so a persistent
                # fault does not spin the loop.
                log.exception("dispatcher_failed", bucket=str(lane.name))
                await asyncio.sleep(self._error_pause)

    async def _dispatch_next(self, lane: _Lane) -> None:
        queue = self._queue
        if queue.in_flight(lane.name) >= lane.max_in_flight:
            await self._sleep(lane, None)  # woken when a poll of this bucket returns
            return
        due = queue.next_due(lane.name)
        if due is None:
            await self._sleep(lane, None)  # woken by add/reschedule
            return
        wait = due - self._clock()
        if wait > 0:
            await self._sleep(lane, wait)
            return
        waited = await lane.limiter.acquire()
        now = self._clock()
        # Popped only now: a task added while we waited with an earlier due time goes first.
        popped = queue.pop_due(lane.name, now)
        if popped is None:
            # Everything due was removed while we waited; the slot passes unused.
            return
        key, due = popped
        if self._on_dispatch is not None:
            try:
                self._on_dispatch(Dispatch(lane.name, key, due, now, waited))
            except Exception:
                log.exception("dispatch_hook_failed", bucket=str(lane.name))
        task = asyncio.get_running_loop().create_task(self._poll_one(lane, key))
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)

    async def _poll_one(self, lane: _Lane, key: K) -> None:
        outcome: PollOutcome | None = None
        try:
            outcome = await self._poll(key)
        except Exception:
            log.exception("poll_failed", bucket=str(lane.name), key=str(key))
        finally:
            if outcome is not None:
                self._act_on(key, outcome)
            bucket = self._queue.finish(key, self._clock())
            self._wake(lane)  # an in-flight slot is free, and the task may be due again
            if bucket is not None and bucket != lane.name:
                self._wake(self._lanes[bucket])

    def _act_on(self, key: K, outcome: PollOutcome) -> None:
        """Apply a poll's outcome while the task is still in flight (before ``finish``)."""
        if outcome.action is PollAction.STOP:
            self._queue.remove(key)
            return
        if outcome.interval is not None:
            self._queue.update_interval(key, outcome.interval, self._clock())
        if outcome.action is PollAction.RETRY:
            self._queue.retry(key)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
