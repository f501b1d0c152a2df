"""The polling scheduler: the dispatcher on a real event loop, gated by its limiter."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from monitor.models import TaskKey
from monitor.ratelimit import LocalRateLimiter
from monitor.scheduler import Dispatch, PollScheduler

LIVENESS = 10.0  # seconds: only a hang reaches this; nothing here measures speed


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
