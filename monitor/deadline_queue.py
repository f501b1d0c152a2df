"""The deadline queue: which task is polled next, per bucket, and when it is due again.

Each bucket (one rate limiter, i.e. one (account, access host)) has a binary heap of
``(due, seq, entry)`` tuples. The queue is pure: time and randomness are arguments, so every
rule below is tested with plain numbers; :mod:`monitor.scheduler` is the asyncio shell that
sleeps, waits for the limiter and starts the polls.

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
* removal and rescheduling are lazy (O(log n)): the old heap tuple stays behind and is skipped
  because its ``seq`` no longer matches the entry's; the heap is compacted when stale tuples
  outnumber live ones.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

__all__ = ["DeadlineQueue", "jittered"]

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

    def add_many(self, items: Iterable[tuple[K, Hashable, float, float]]) -> int:
        """:meth:`add` for many tasks, ``(key, bucket, interval, due)`` each, e.g. a restart's
        whole table: each heap is built once (O(n)) rather than pushed into task by task.
        Keys already scheduled are left as they are. Returns how many were added."""
        touched: dict[Hashable, list[_Item[K]]] = {}  # bucket -> its new heap tuples
        counted: dict[tuple[Hashable, float], int] = {}  # (bucket, interval) -> tasks added
        checked: set[float] = set()
        added = 0
        entries = self._entries
        seq = self._seq
        try:
            for key, bucket, interval, due in items:
                existing = entries.get(key)
                if existing is not None and not _removed(existing):
                    continue
                new = touched.get(bucket)
                if new is None:
                    self._bucket(bucket)  # KeyError for an unknown bucket, as add raises
                    new = touched[bucket] = []
                if existing is not None:
                    # Removed while its poll is in flight: add revives it.
                    self._seq = seq
                    added += self.add(key, bucket, interval, due)
                    seq = self._seq
                    continue
                if interval not in checked:
                    _check_interval(interval)
                    checked.add(interval)
                entry = _Entry(key, bucket, interval)
                entries[key] = entry
                counted[bucket, interval] = counted.get((bucket, interval), 0) + 1
                seq += 1
                entry.seq = seq
                entry.due = due
                new.append((due, seq, entry))
                added += 1
        finally:
            # Also when ``items`` raised midway: what was added is counted and queued, each
            # heap valid.
            self._seq = seq
            for (bucket, interval), count in counted.items():
                state = self._buckets[bucket]
                state.tasks += count
                state.intervals[interval] = state.intervals.get(interval, 0) + count
            for bucket, new in touched.items():
                _merge(self._buckets[bucket].heap, new)
        return added

    def take_over(
        self,
        items: Iterable[tuple[K, Hashable, float, float]],
        now: float,
        backlog: float,
    ) -> int:
        """Tasks taken over from a replica that died: ``(key, bucket, interval, due)`` each, most
        overdue first. Returns how many were queued (added, or pulled in when already known).

        Over budget every waiting task is overdue, so at their own due times the taken tasks
        would sort amid that backlog and the last would wait a whole rotation; yet nobody has
        polled them since the dead replica stopped, so they are the most overdue of all. In a
        bucket whose head has waited more than ``backlog`` seconds they therefore go just ahead
        of the head, in the given order (an earlier own due time is kept). Elsewhere each keeps
        its own due time, so an idle fleet resumes every task's rhythm rather than polling all
        of them at once. Only the order changes: the limiter still grants every poll.
        """
        floors: dict[Hashable, float | None] = {}
        queued = 0
        for key, bucket, interval, due in items:
            if bucket not in floors:
                head = self.next_due(bucket)
                floors[bucket] = (
                    None
                    if head is None or head >= now - backlog
                    else math.nextafter(head, -math.inf)
                )
            floor = floors[bucket]
            if floor is not None:
                due = min(due, floor)
            entry = self._live(key)
            if entry is None:
                queued += self.add(key, bucket, interval, due)
            else:
                self.update_interval(key, interval, now)
                queued += self.reschedule(key, due)
        return queued

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


def _merge(heap: list[_Item[K]], new: list[_Item[K]]) -> None:
    """``new`` into ``heap``: rebuilt once (O(n)) when that is cheaper, e.g. a restart's whole
    table into an empty heap; pushed one by one (O(k log n)) when few join a large heap, e.g. a
    bulk registration's thousand tasks into a fleet of 100,000."""
    size = len(heap) + len(new)
    if len(new) * size.bit_length() >= 2 * size:
        heap.extend(new)
        heapq.heapify(heap)
    else:
        for item in new:
            heapq.heappush(heap, item)


def _removed(entry: _Entry[K]) -> bool:
    return entry.flight is not None and entry.flight.removed


def _check_jitter(jitter: float) -> None:
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


def _check_interval(interval: float) -> None:
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"interval must be a positive number of seconds, got {interval}")
