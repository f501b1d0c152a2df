"""Polling scheduler: a deadline queue per budget, drained by one dispatcher gated by its limiter.

Why not one APScheduler job per task: its memory job store is a sorted list (O(n) per
reschedule), all due jobs run in one synchronous callback, and 100,000 jobs due at once blocked
the loop for seconds and were skipped as misfired. Here each bucket (one rate limiter, i.e. one
(account, access host)) has its heap in a :class:`~monitor.deadline_queue.DeadlineQueue` and one
dispatcher coroutine that sleeps until the earliest due time, waits for the limiter, and only
then pops the heap top and starts the poll.

Invariants kept here (the queue keeps its own, see :mod:`monitor.deadline_queue`):
* a token is acquired only when a task is due, and the heap is popped only once the token is
  granted, so a task added meanwhile with an earlier due time still goes first;
* the scheduler never dies: a poll that raises is logged and the task rescheduled.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from monitor.deadline_queue import DeadlineQueue
from monitor.ratelimit import RateLimiter

__all__ = [
    "Dispatch",
    "PollAction",
    "PollOutcome",
    "PollScheduler",
]

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)


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

    def add_many(self, items: Iterable[tuple[K, Hashable, float, float]]) -> int:
        """:meth:`add` for many tasks at once, ``(key, bucket, interval, due_in)`` each (a
        restart's whole table): one pass, each bucket's heap built once. Tasks already
        scheduled are left as they are. Returns how many were added."""
        before: dict[Hashable, float | None] = {}
        try:
            return self._queue.add_many(self._placed(items, self._clock(), before))
        finally:
            for bucket, head in before.items():
                self._nudge(bucket, head)

    def _placed(
        self,
        items: Iterable[tuple[K, Hashable, float, float]],
        now: float,
        before: dict[Hashable, float | None],
    ) -> Iterator[tuple[K, Hashable, float, float]]:
        """``items`` with due times on the scheduler's clock, handed on one by one (a restart's
        table is not copied into a list); each bucket is declared, and its head noted in
        ``before``, when its first task comes by, before the queue has any of them."""
        for key, bucket, interval, due_in in items:
            if bucket not in before:
                if bucket not in self._lanes:
                    if self._limiter_for is None:
                        raise KeyError(f"unknown bucket {bucket!r}")
                    self.add_bucket(bucket, self._limiter_for(bucket))
                before[bucket] = self._queue.next_due(bucket)
            yield key, bucket, interval, now + due_in

    def take_over(
        self, items: Iterable[tuple[K, Hashable, float, float]], *, backlog: float = 1.0
    ) -> int:
        """Tasks taken over from a replica that died, ``(key, bucket, interval, due_in)`` each,
        most overdue first: in a bucket whose head has waited more than ``backlog`` seconds (the
        budget cannot keep up) they go ahead of that backlog, in this order; elsewhere each is
        due in its ``due_in``. See :meth:`DeadlineQueue.take_over`. Returns how many were queued.
        """
        now = self._clock()
        placed: list[tuple[K, Hashable, float, float]] = []
        for key, bucket, interval, due_in in items:
            if bucket not in self._lanes:
                if self._limiter_for is None:
                    raise KeyError(f"unknown bucket {bucket!r}")
                self.add_bucket(bucket, self._limiter_for(bucket))
            placed.append((key, bucket, interval, now + due_in))
        before = {bucket: self._queue.next_due(bucket) for _, bucket, _, _ in placed}
        queued = self._queue.take_over(placed, now, backlog)
        for bucket, head in before.items():
            self._nudge(bucket, head)
        return queued

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
