"""A restart's table reaches the deadline queue as a stream: the queue stays valid whatever the
stream does, and the scheduler never copies it into a list first."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from monitor.deadline_queue import DeadlineQueue
from monitor.ratelimit import LocalRateLimiter
from monitor.scheduler import PollScheduler


def drain(q: DeadlineQueue[str], bucket: str, now: float) -> list[tuple[str, float]]:
    out = []
    while (popped := q.pop_due(bucket, now)) is not None:
        out.append(popped)
    return out


class Broken(Exception):
    pass


def breaks_after(
    items: list[tuple[str, str, float, float]],
) -> Iterator[tuple[str, str, float, float]]:
    yield from items
    raise Broken


class TestStream:
    def test_a_stream_that_fails_midway_leaves_what_it_gave_queued_in_due_order(self) -> None:
        q: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
        q.add_bucket("a")
        q.add("first", "a", 10.0, 5.0)
        given = [(f"k{i}", "a", 10.0, float(-i)) for i in range(50)]
        with pytest.raises(Broken):
            q.add_many(breaks_after(given))
        assert q.task_count("a") == 51
        assert q.required_rate("a") == pytest.approx(51 / 10.0)
        assert q.next_due("a") == -49.0
        popped = drain(q, "a", 100.0)
        assert [due for _, due in popped] == sorted(due for _, due in popped)
        assert {key for key, _ in popped} == {"first"} | {key for key, *_ in given}


class TestSchedulerTakesAStream:
    def test_items_are_taken_one_by_one_as_the_queue_adds_them(self) -> None:
        clock = [100.0]
        scheduler: PollScheduler[str] = PollScheduler(
            _never_polled,
            limiter_for=_free_limiter,
            jitter=0.0,
            clock=lambda: clock[0],
        )
        seen: list[bool] = []

        def stream() -> Iterator[tuple[str, str, float, float]]:
            for i in range(5):
                # Each item is handed over only after the one before it is in the queue.
                seen.append(i == 0 or f"k{i - 1}" in scheduler)
                yield f"k{i}", "a", 10.0, float(i)

        assert scheduler.add_many(stream()) == 5
        assert seen == [True] * 5
        assert len(scheduler) == 5
        assert scheduler.due_of("k3") == 103.0

    def test_an_unknown_bucket_without_a_limiter_still_raises(self) -> None:
        scheduler: PollScheduler[str] = PollScheduler(_never_polled, jitter=0.0)
        with pytest.raises(KeyError):
            scheduler.add_many(iter([("x", "nowhere", 10.0, 0.0)]))
        assert "x" not in scheduler


async def _never_polled(key: str) -> None:
    raise AssertionError(f"{key} polled")


def _free_limiter(bucket: object) -> LocalRateLimiter:
    return LocalRateLimiter(10_000, 1.0, key=str(bucket))


class TestFewJoinMany:
    def test_a_small_batch_into_a_large_heap_keeps_the_order_of_adding_one_by_one(self) -> None:
        # A bulk registration's batch joins a fleet: pushed rather than rebuilt, same order.
        rng = random.Random(5)
        fleet = [(f"f{i}", "a", 15.0, rng.uniform(-100, 100)) for i in range(3000)]
        batch = [(f"b{i}", "a", 15.0, rng.choice([0.0, 0.0, -5.0, 50.0])) for i in range(20)]
        one: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
        many: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
        for q in (one, many):
            q.add_bucket("a")
            q.add_many(fleet)
        for key, bucket, interval, due in batch:
            one.add(key, bucket, interval, due)
        assert many.add_many(batch) == len(batch)
        assert drain(many, "a", 1000.0) == drain(one, "a", 1000.0)
