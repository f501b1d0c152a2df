"""The polling scheduler: deadline ordering (pure) and the dispatcher on a real event loop."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.models import TaskKey
from monitor.ratelimit import LocalRateLimiter
from monitor.scheduler import DeadlineQueue, Dispatch, PollScheduler, jittered

LIVENESS = 10.0  # seconds: only a hang reaches this; nothing here measures speed


def queue(jitter: float = 0.0, seed: int = 1) -> DeadlineQueue[str]:
    q: DeadlineQueue[str] = DeadlineQueue(jitter=jitter, rng=random.Random(seed))
    q.add_bucket("a")
    return q


def drain(q: DeadlineQueue[str], now: float, bucket: str = "a") -> list[str]:
    keys = []
    while (popped := q.pop_due(bucket, now)) is not None:
        keys.append(popped[0])
    return keys


class TestJittered:
    @given(
        interval=st.floats(0.001, 3600.0),
        jitter=st.floats(0.0, 0.99),
        u=st.floats(-1.0, 1.0),
    )
    def test_a_jittered_interval_stays_within_its_bounds(
        self, interval: float, jitter: float, u: float
    ) -> None:
        value = jittered(interval, jitter, u)
        assert (
            interval * (1 - jitter) * (1 - 1e-12) <= value <= interval * (1 + jitter) * (1 + 1e-12)
        )

    def test_the_extremes_of_u_reach_the_bounds(self) -> None:
        assert jittered(10.0, 0.1, -1.0) == pytest.approx(9.0)
        assert jittered(10.0, 0.1, 1.0) == pytest.approx(11.0)
        assert jittered(10.0, 0.1, 0.0) == 10.0


class TestDeadlineQueueOrdering:
    def test_nothing_is_popped_before_it_is_due(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, due=5.0)
        assert q.pop_due("a", 4.999) is None
        assert q.pop_due("a", 5.0) == ("x", 5.0)

    def test_the_most_overdue_task_goes_first(self) -> None:
        q = queue()
        for key, due in [("late", 5.0), ("oldest", 1.0), ("middle", 3.0)]:
            q.add(key, "a", 10.0, due)
        assert drain(q, 10.0) == ["oldest", "middle", "late"]

    def test_equal_due_times_go_in_insertion_order(self) -> None:
        q = queue()
        for key in "dcbae":
            q.add(key, "a", 10.0, 1.0)
        assert drain(q, 1.0) == list("dcbae")

    def test_a_new_task_due_now_goes_after_tasks_overdue_since_earlier(self) -> None:
        q = queue()
        q.add("old", "a", 10.0, 1.0)
        q.add("new", "a", 10.0, 7.0)  # added at t=7, due at once
        assert drain(q, 7.0) == ["old", "new"]

    def test_a_polled_task_returns_only_after_it_finishes_one_interval_later(self) -> None:
        q = queue(jitter=0.0)
        q.add("x", "a", 10.0, 0.0)
        assert q.pop_due("a", 0.0) == ("x", 0.0)
        assert q.is_in_flight("x")
        assert q.pop_due("a", 100.0) is None
        assert q.finish("x", 2.0) == "a"
        assert q.due_of("x") == 12.0

    def test_the_next_due_time_is_jittered_within_bounds(self) -> None:
        q = queue(jitter=0.2, seed=3)
        q.add("x", "a", 10.0, 0.0)
        dues = []
        for _ in range(200):
            assert q.pop_due("a", math.inf) is not None
            q.finish("x", 0.0)
            due = q.due_of("x")
            assert due is not None
            dues.append(due)
        assert all(8.0 <= due <= 12.0 for due in dues)
        assert min(dues) < 8.5
        assert max(dues) > 11.5

    def test_a_changed_jitter_applies_to_the_next_return(self) -> None:
        q = queue(jitter=0.5)
        q.jitter = 0.0
        q.add("x", "a", 10.0, 0.0)
        q.pop_due("a", 0.0)
        q.finish("x", 1.0)
        assert q.due_of("x") == 11.0
        with pytest.raises(ValueError, match="jitter"):
            q.jitter = 1.0

    def test_finishing_a_task_not_in_flight_is_an_error(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 0.0)
        with pytest.raises(ValueError, match="no poll in flight"):
            q.finish("x", 1.0)

    def test_an_unknown_bucket_is_refused(self) -> None:
        q = queue()
        with pytest.raises(KeyError, match="unknown bucket"):
            q.add("x", "nope", 10.0, 0.0)

    def test_a_nonpositive_interval_is_refused(self) -> None:
        q = queue()
        with pytest.raises(ValueError, match="interval"):
            q.add("x", "a", 0.0, 0.0)
        with pytest.raises(ValueError, match="interval"):
            q.add("x", "a", math.nan, 0.0)

    def test_adding_a_scheduled_task_again_changes_nothing(self) -> None:
        q = queue()
        assert q.add("x", "a", 10.0, 5.0)
        assert not q.add("x", "a", 1.0, 0.0)
        assert q.interval_of("x") == 10.0
        assert q.due_of("x") == 5.0


class TestDeadlineQueueChanges:
    def test_reschedule_moves_a_queued_task_earlier(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 50.0)
        q.add("y", "a", 10.0, 20.0)
        assert q.reschedule("x", 3.0)
        assert drain(q, 30.0) == ["x", "y"]

    def test_reschedule_never_postpones(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 5.0)
        q.reschedule("x", 50.0)
        assert q.due_of("x") == 5.0

    def test_reschedule_during_flight_applies_when_the_poll_returns(self) -> None:
        q = queue(jitter=0.0)
        q.add("x", "a", 100.0, 0.0)
        q.pop_due("a", 0.0)
        assert q.reschedule("x", 1.0)
        assert q.reschedule("x", 4.0)  # the earliest request wins
        assert q.pop_due("a", 10.0) is None
        q.finish("x", 2.0)
        assert q.due_of("x") == 1.0

    def test_a_retried_poll_goes_back_to_the_place_it_had(self) -> None:
        q = queue(jitter=0.0)
        for i, key in enumerate(["x", "y", "z"]):
            q.add(key, "a", 100.0, float(i))
        assert q.pop_due("a", 50.0) == ("x", 0.0)  # all three are long overdue
        assert q.retry("x")  # e.g. throttled: no fault of the task
        q.finish("x", 50.1)
        # Without the retry it would be due at 150.1, after every other overdue task.
        assert q.due_of("x") == 0.0
        assert drain(q, 50.2) == ["x", "y", "z"]

    def test_retry_needs_a_poll_in_flight(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 0.0)
        assert not q.retry("x")
        assert not q.retry("unknown")

    def test_a_removed_task_is_never_popped(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 1.0)
        q.add("y", "a", 10.0, 2.0)
        assert q.remove("x")
        assert "x" not in q
        assert not q.remove("x")
        assert drain(q, 10.0) == ["y"]

    def test_a_task_removed_during_flight_is_dropped_when_its_poll_returns(self) -> None:
        q = queue()
        q.add("x", "a", 10.0, 0.0)
        q.pop_due("a", 0.0)
        assert q.remove("x")
        assert "x" not in q
        assert q.finish("x", 1.0) is None
        assert q.in_flight("a") == 0
        assert drain(q, 100.0) == []
        assert not q.is_in_flight("x")

    def test_a_task_readded_during_flight_waits_for_the_poll_to_return(self) -> None:
        q = queue(jitter=0.0)
        q.add_bucket("b")
        q.add("x", "a", 10.0, 0.0)
        q.pop_due("a", 0.0)
        q.remove("x")
        assert q.add("x", "b", 30.0, 1.0)
        assert "x" in q
        assert q.pop_due("b", 5.0) is None  # still in flight: never two polls at once
        assert q.finish("x", 2.0) == "b"
        assert (q.in_flight("a"), q.in_flight("b")) == (0, 0)
        assert q.pop_due("b", 2.0) == ("x", 1.0)
        assert q.required_rate("b") == pytest.approx(1 / 30)
        assert q.required_rate("a") == 0.0

    def test_a_shorter_interval_pulls_the_next_poll_in(self) -> None:
        q = queue()
        q.add("x", "a", 60.0, 60.0)
        assert q.update_interval("x", 5.0, now=10.0)
        assert q.due_of("x") == 15.0
        assert q.update_interval("x", 600.0, now=11.0)
        assert q.due_of("x") == 15.0

    def test_stale_heap_entries_are_compacted(self) -> None:
        q = queue()
        for i in range(100):
            q.add(str(i), "a", 10.0, 1000.0 + i)
        for step in range(20):
            for i in range(100):
                q.reschedule(str(i), 999.0 - step - i / 1000)
        assert len(q._buckets["a"].heap) <= 2 * 100 + 256  # bounded, not 2,100
        assert sorted(drain(q, 2000.0)) == sorted(str(i) for i in range(100))

    def test_due_count_counts_only_live_tasks_that_are_due(self) -> None:
        q = queue()
        for i in range(50):
            q.add(str(i), "a", 10.0, float(i))
        q.remove("3")
        q.reschedule("40", 0.5)
        assert q.due_count("a", 9.0) == 10 - 1 + 1
        assert q.due_count("a", -1.0) == 0
        assert q.due_count("a", 100.0) == 49


@dataclass
class _Model:
    interval: float
    due: float | None  # None while in flight
    pending: float | None = None
    removed: bool = False


# Every operation has the same shape: (name, key, interval, time); unused fields are ignored.
ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "update", "reschedule", "pop", "finish", "tick"]),
        st.integers(0, 7).map(str),
        st.sampled_from([0.5, 1.0, 2.5, 10.0]),
        st.floats(0, 100),
    ),
    max_size=80,
)


class TestDeadlineQueueModel:
    @settings(max_examples=300, deadline=None)
    @given(ops=ops)
    def test_the_queue_agrees_with_a_simple_model_under_any_sequence(
        self, ops: list[tuple[str, str, float, float]]
    ) -> None:
        q = queue(jitter=0.0)
        model: dict[str, _Model] = {}
        now = 0.0
        for name, key, interval, at in ops:
            m = model.get(key)
            if name == "add":
                added = q.add(key, "a", interval, at)
                assert added == (m is None or m.removed)
                if m is None:
                    model[key] = _Model(interval, at)
                elif m.removed:
                    m.removed, m.interval, m.pending = False, interval, at
            elif name == "remove":
                assert q.remove(key) == (m is not None and not m.removed)
                if m is not None and not m.removed:
                    if m.due is None:
                        m.removed, m.pending = True, None
                    else:
                        del model[key]
            elif name == "update":
                assert q.update_interval(key, interval, now) == (m is not None and not m.removed)
                if m is not None and not m.removed:
                    m.interval = interval
                    if m.due is not None and now + interval < m.due:
                        m.due = now + interval
            elif name == "reschedule":
                assert q.reschedule(key, at) == (m is not None and not m.removed)
                if m is not None and not m.removed:
                    if m.due is None:
                        m.pending = at if m.pending is None else min(m.pending, at)
                    else:
                        m.due = min(m.due, at)
            elif name == "pop":
                queued = [x.due for x in model.values() if x.due is not None]
                popped = q.pop_due("a", now)
                if not queued or min(queued) > now:
                    assert popped is None
                else:
                    assert popped is not None
                    assert popped[1] == min(queued)
                    assert model[popped[0]].due == popped[1]
                    model[popped[0]].due = None
            elif name == "finish":
                if m is None or m.due is not None:
                    continue
                bucket = q.finish(key, now)
                if m.removed:
                    assert bucket is None
                    del model[key]
                else:
                    assert bucket == "a"
                    m.due = (
                        now + m.interval if m.pending is None else min(now + m.interval, m.pending)
                    )
                    m.pending = None
            else:  # tick
                now += at / 5

            live = {k: x for k, x in model.items() if not x.removed}
            assert len(q) == q.task_count("a") == len(live)
            assert q.required_rate("a") == pytest.approx(sum(1 / x.interval for x in live.values()))
            assert q.in_flight("a") == sum(1 for x in model.values() if x.due is None)
            assert q.due_count("a", now) == sum(
                1 for x in model.values() if x.due is not None and x.due <= now
            )
            queued = [x.due for x in model.values() if x.due is not None]
            assert q.next_due("a") == (min(queued) if queued else None)
            for k, x in live.items():
                assert q.due_of(k) == x.due


# -- the asyncio scheduler ----------------------------------------------------------------


def free_limiter() -> LocalRateLimiter:
    return LocalRateLimiter(10_000, 1.0, key="free")


class Polls:
    """A poll function that records what it saw; behaviour per call is pluggable."""

    def __init__(self, body: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.started: list[tuple[str, float]] = []
        self.finished: list[tuple[str, float]] = []
        self.running: Counter[str] = Counter()
        self.max_running: Counter[str] = Counter()
        self.body = body
        self.changed = asyncio.Event()

    async def __call__(self, key: str) -> None:
        self.started.append((key, time.monotonic()))
        self.running[key] += 1
        self.max_running[key] = max(self.max_running[key], self.running[key])
        self.changed.set()
        try:
            if self.body is not None:
                await self.body(key)
        finally:
            self.running[key] -= 1
            self.finished.append((key, time.monotonic()))
            self.changed.set()

    def count(self, key: str) -> int:
        return sum(1 for k, _ in self.started if k == key)

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), LIVENESS)


def make(
    polls: Polls,
    *,
    limiter: LocalRateLimiter | None = None,
    max_in_flight: int = 32,
    jitter: float = 0.1,
    seed: int = 5,
    on_dispatch: Callable[[Dispatch[str]], None] | None = None,
) -> PollScheduler[str]:
    scheduler: PollScheduler[str] = PollScheduler(
        polls, jitter=jitter, rng=random.Random(seed), on_dispatch=on_dispatch, error_pause=0.01
    )
    scheduler.add_bucket("a", limiter or free_limiter(), max_in_flight=max_in_flight)
    return scheduler


class TestPollSchedulerBasics:
    async def test_a_new_task_is_polled_at_once(self) -> None:
        polls = Polls()
        dispatches: list[Dispatch[str]] = []
        scheduler = make(polls, on_dispatch=dispatches.append)
        scheduler.start()
        before = time.monotonic()
        scheduler.add("x", "a", 3600.0)
        await polls.until(lambda: polls.count("x") == 1)
        await scheduler.stop()
        assert dispatches[0].key == "x"
        assert before <= dispatches[0].due <= dispatches[0].at
        assert dispatches[0].delay >= 0.0
        assert dispatches[0].limiter_wait >= 0.0

    async def test_a_task_added_before_start_is_polled_when_started(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.add("x", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: polls.count("x") == 1)
        await scheduler.stop()

    async def test_an_earlier_task_wakes_a_dispatcher_sleeping_until_a_later_one(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.add("later", "a", 3600.0, due_in=3600.0)
        scheduler.start()
        await asyncio.sleep(0.02)
        scheduler.add("now", "a", 3600.0)
        await polls.until(lambda: polls.count("now") == 1)
        await scheduler.stop()
        assert polls.count("later") == 0

    async def test_polls_repeat_no_sooner_than_the_jittered_interval(self) -> None:
        polls = Polls()
        dispatches: list[Dispatch[str]] = []
        scheduler = make(polls, jitter=0.5, on_dispatch=dispatches.append)
        scheduler.add("x", "a", 0.04)
        scheduler.start()
        await polls.until(lambda: polls.count("x") >= 16)
        await scheduler.stop()
        ends = [t for _, t in polls.finished]
        dues = [d.due for d in dispatches]
        gaps = [due - end for end, due in zip(ends, dues[1:], strict=False)]
        assert len(gaps) >= 15
        assert all(gap >= 0.04 * 0.5 for gap in gaps)  # the scheduler never polls early
        assert min(gaps) < 0.04  # the jitter spreads both ways
        assert max(gaps) > 0.04
        starts = [t for _, t in polls.started]
        assert all(s >= end + 0.02 for end, s in zip(ends, starts[1:], strict=False))

    async def test_a_slow_poll_never_overlaps_itself(self) -> None:
        async def slow(key: str) -> None:
            await asyncio.sleep(0.05)

        polls = Polls(slow)
        scheduler = make(polls)
        for key in ("x", "y"):
            scheduler.add(key, "a", 0.001)
        scheduler.start()
        await polls.until(lambda: polls.count("x") >= 4 and polls.count("y") >= 4)
        await scheduler.stop()
        assert polls.max_running == Counter({"x": 1, "y": 1})

    async def test_a_removed_task_is_no_longer_polled(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.add("x", "a", 0.01)
        scheduler.add("y", "a", 0.01)
        scheduler.start()
        await polls.until(lambda: polls.count("x") >= 2)
        assert scheduler.remove("x")
        seen = polls.count("x")
        await polls.until(lambda: polls.count("y") >= polls.count("x") + 10)
        await scheduler.stop()
        assert polls.count("x") == seen
        assert "x" not in scheduler

    async def test_a_task_removed_during_its_poll_is_not_polled_again(self) -> None:
        gate = asyncio.Event()

        async def held(key: str) -> None:
            await gate.wait()

        polls = Polls(held)
        scheduler = make(polls)
        scheduler.add("x", "a", 0.001)
        scheduler.start()
        await polls.until(lambda: polls.count("x") == 1)
        scheduler.remove("x")
        gate.set()
        await polls.until(lambda: len(polls.finished) == 1)
        await asyncio.sleep(0.05)
        await scheduler.stop()
        assert polls.count("x") == 1
        assert scheduler.in_flight("a") == 0

    async def test_reschedule_polls_a_waiting_task_at_once(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.add("x", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: polls.count("x") == 1 and len(polls.finished) == 1)
        await asyncio.sleep(0.01)
        assert scheduler.reschedule("x")
        await polls.until(lambda: polls.count("x") == 2)
        await scheduler.stop()
        assert not scheduler.reschedule("unknown")

    async def test_reschedule_during_a_poll_polls_again_when_it_returns(self) -> None:
        gate = asyncio.Event()

        async def held(key: str) -> None:
            if polls.count(key) == 1:
                await gate.wait()

        polls = Polls(held)
        scheduler = make(polls)
        scheduler.add("x", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: polls.count("x") == 1)
        scheduler.reschedule("x")
        await asyncio.sleep(0.02)
        assert polls.count("x") == 1  # never two polls of one task at once
        gate.set()
        await polls.until(lambda: polls.count("x") == 2)
        await scheduler.stop()
        assert polls.max_running["x"] == 1

    async def test_required_rate_follows_adds_updates_and_removals(self) -> None:
        scheduler = make(Polls())
        assert scheduler.required_rate("a") == 0.0
        for i in range(10):
            scheduler.add(f"t{i}", "a", 15.0)
        assert scheduler.required_rate("a") == pytest.approx(10 / 15)
        scheduler.update_interval("t0", 5.0)
        assert scheduler.required_rate("a") == pytest.approx(9 / 15 + 1 / 5)
        scheduler.remove("t0")
        scheduler.remove("t1")
        assert scheduler.required_rate("a") == pytest.approx(8 / 15)
        assert scheduler.task_count("a") == len(scheduler) == 8
        assert scheduler.interval_of("t2") == 15.0
        assert not scheduler.update_interval("t0", 1.0)

    async def test_an_unknown_bucket_is_refused_without_a_limiter_factory(self) -> None:
        scheduler = make(Polls())
        with pytest.raises(KeyError, match="unknown bucket"):
            scheduler.add("x", "nope", 1.0)

    async def test_a_bucket_is_made_on_first_use_by_the_limiter_factory(self) -> None:
        made: list[str] = []

        def limiter_for(bucket: str) -> LocalRateLimiter:
            made.append(bucket)
            return LocalRateLimiter(7, 1.0, key=bucket)

        polls = Polls()
        scheduler: PollScheduler[str] = PollScheduler(polls, limiter_for=limiter_for)
        scheduler.add("x", "acct@host", 3600.0)
        scheduler.add("y", "acct@host", 3600.0)
        assert made == ["acct@host"]
        assert scheduler.limiter("acct@host").limit == 7
        scheduler.start()
        await polls.until(lambda: len(polls.started) == 2)
        await scheduler.stop()

    async def test_negative_due_in_puts_the_longest_overdue_task_first(self) -> None:
        polls = Polls()
        scheduler = make(polls, max_in_flight=1)
        scheduler.add("due-now", "a", 3600.0)
        scheduler.add("overdue-1s", "a", 3600.0, due_in=-1.0)
        scheduler.add("overdue-1h", "a", 3600.0, due_in=-3600.0)
        scheduler.add("later", "a", 3600.0, due_in=3600.0)
        scheduler.start()
        await polls.until(lambda: len(polls.started) == 3)
        await scheduler.stop()
        assert [k for k, _ in polls.started] == ["overdue-1h", "overdue-1s", "due-now"]


class TestPollSchedulerBudget:
    async def test_under_overload_every_task_is_served_in_rotation(self) -> None:
        polls = Polls()
        limiter = LocalRateLimiter(5, 0.1, key="tight")
        scheduler = make(polls, limiter=limiter)
        tasks = [f"t{i:02d}" for i in range(50)]
        for key in tasks:
            scheduler.add(key, "a", 0.1)
        assert scheduler.required_rate("a") == pytest.approx(500.0)
        scheduler.start()
        await polls.until(lambda: len(polls.started) >= 130)
        due_waiting = scheduler.due_count("a")
        await scheduler.stop()
        order = [key for key, _ in polls.started]
        assert order[:50] == tasks  # all due at once: in order of registration
        positions: defaultdict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(order):
            positions[key].append(i)
        assert set(positions) == set(tasks)
        assert all(len(p) >= 2 for p in positions.values())
        # Staleness in dispatches: each task waits about one rotation, never much longer.
        waits = [b - a for p in positions.values() for a, b in itertools.pairwise(p)]
        assert max(waits) <= 1.15 * len(tasks)
        assert min(waits) >= 0.85 * len(tasks)
        assert due_waiting >= 40

    async def test_a_new_task_under_overload_waits_its_turn_but_not_longer(self) -> None:
        polls = Polls()
        scheduler = make(polls, limiter=LocalRateLimiter(5, 0.1))
        for i in range(30):
            scheduler.add(f"t{i:02d}", "a", 0.05)
        scheduler.start()
        await polls.until(lambda: len(polls.started) >= 40)
        mark = len(polls.started)
        scheduler.add("new", "a", 0.05)
        await polls.until(lambda: polls.count("new") == 1)
        await scheduler.stop()
        position = [k for k, _ in polls.started].index("new") - mark
        assert 10 <= position <= 31  # behind the overdue tasks, within one rotation

    async def test_a_task_added_while_the_limiter_is_waited_on_can_still_go_first(
        self,
    ) -> None:
        polls = Polls()
        limiter = LocalRateLimiter(1, 0.3)
        scheduler = make(polls, limiter=limiter)
        scheduler.add("first", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: polls.count("first") == 1)
        scheduler.add("due-now", "a", 3600.0)
        await asyncio.sleep(0.05)
        assert limiter.waiting == 1  # the dispatcher waits for a token, the task still queued
        scheduler.add("overdue", "a", 3600.0, due_in=-60.0)
        await polls.until(lambda: len(polls.started) == 3)
        await scheduler.stop()
        assert [k for k, _ in polls.started] == ["first", "overdue", "due-now"]

    async def test_in_flight_polls_are_bounded_per_bucket(self) -> None:
        gate = asyncio.Event()

        async def held(key: str) -> None:
            await gate.wait()

        polls = Polls(held)
        scheduler = make(polls, max_in_flight=3)
        for i in range(10):
            scheduler.add(f"t{i}", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: len(polls.started) == 3)
        await asyncio.sleep(0.05)
        assert len(polls.started) == 3
        assert scheduler.in_flight("a") == 3
        assert scheduler.due_count("a") == 7
        gate.set()
        await polls.until(lambda: len(polls.started) == 10)
        await scheduler.stop()
        assert max(polls.running.values()) == 0

    async def test_a_tight_bucket_does_not_hold_back_another(self) -> None:
        polls = Polls()
        scheduler = make(polls, limiter=LocalRateLimiter(1, 30.0))
        scheduler.add_bucket("b", free_limiter())
        for i in range(5):
            scheduler.add(f"slow{i}", "a", 3600.0)
            scheduler.add(f"fast{i}", "b", 3600.0)
        scheduler.start()
        await polls.until(lambda: sum(polls.count(f"fast{i}") for i in range(5)) == 5)
        await scheduler.stop()
        assert sum(polls.count(f"slow{i}") for i in range(5)) == 1


class TestPollSchedulerRobustness:
    async def test_a_failing_poll_is_logged_and_the_task_polled_again(self) -> None:
        async def failing(key: str) -> None:
            if polls.count(key) <= 2:
                raise RuntimeError("boom")

        polls = Polls(failing)
        scheduler = make(polls)
        scheduler.add("x", "a", 0.01)
        with capture_logs() as logs:
            scheduler.start()
            await polls.until(lambda: polls.count("x") >= 5)
            await scheduler.stop()
        failures = [e for e in logs if e["event"] == "poll_failed"]
        assert len(failures) == 2
        assert failures[0]["key"] == "x"

    async def test_a_failing_dispatch_hook_does_not_stop_polling(self) -> None:
        def hook(dispatch: Dispatch[str]) -> None:
            raise ValueError("hook")

        polls = Polls()
        scheduler = make(polls, on_dispatch=hook)
        scheduler.add("x", "a", 0.01)
        with capture_logs() as logs:
            scheduler.start()
            await polls.until(lambda: polls.count("x") >= 3)
            await scheduler.stop()
        assert any(e["event"] == "dispatch_hook_failed" for e in logs)

    async def test_stop_cancels_polls_that_outlive_the_grace_period(self) -> None:
        async def forever(key: str) -> None:
            await asyncio.Event().wait()

        polls = Polls(forever)
        scheduler = make(polls, max_in_flight=100)
        for i in range(20):
            scheduler.add(f"t{i}", "a", 0.01)
        scheduler.start()
        await polls.until(lambda: len(polls.started) == 20)
        with capture_logs():
            await asyncio.wait_for(scheduler.stop(grace=0.05), LIVENESS)
        assert not scheduler.running
        assert len(polls.finished) == 20
        assert scheduler.in_flight("a") == 0
        assert len(scheduler) == 20  # tasks stay registered; start() resumes them

    async def test_stop_lets_polls_in_flight_finish_within_the_grace_period(self) -> None:
        async def short(key: str) -> None:
            await asyncio.sleep(0.05)

        polls = Polls(short)
        scheduler = make(polls)
        scheduler.add("x", "a", 3600.0)
        scheduler.start()
        await polls.until(lambda: polls.count("x") == 1)
        await scheduler.stop(grace=LIVENESS)
        assert polls.finished[0][0] == "x"

    async def test_run_returns_after_stop_and_cancelling_run_stops(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.add("x", "a", 0.01)
        runner = asyncio.create_task(scheduler.run())
        await polls.until(lambda: polls.count("x") >= 2)
        await scheduler.stop()
        await asyncio.wait_for(runner, LIVENESS)

        runner = asyncio.create_task(scheduler.run())
        await polls.until(lambda: polls.count("x") >= 4)
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert not scheduler.running
        seen = polls.count("x")
        await asyncio.sleep(0.05)
        assert polls.count("x") == seen

    async def test_a_bucket_added_while_running_gets_its_own_dispatcher(self) -> None:
        polls = Polls()
        scheduler = make(polls)
        scheduler.start()
        scheduler.add_bucket("late", free_limiter())
        scheduler.add("x", "late", 3600.0)
        await polls.until(lambda: polls.count("x") == 1)
        await scheduler.stop()
        assert scheduler.buckets == ("a", "late")

    async def test_task_keys_can_be_task_keys(self) -> None:
        seen: list[TaskKey] = []

        async def poll(key: TaskKey) -> None:
            seen.append(key)

        scheduler: PollScheduler[TaskKey] = PollScheduler(poll)
        scheduler.add_bucket("acct", free_limiter())
        scheduler.add(TaskKey(1400000001, "abc"), "acct", 3600.0)
        scheduler.start()
        try:
            await asyncio.wait_for(_until(lambda: bool(seen)), LIVENESS)
        finally:
            await scheduler.stop()
        assert seen == [TaskKey(1400000001, "abc")]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)
