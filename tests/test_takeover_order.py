"""Tasks taken over from a dead replica go ahead of an over-budget backlog, in takeover order.

Over budget every waiting task is overdue; taken over at their own due times, a dead replica's
tasks would sort amid that backlog and the last of them would wait a whole rotation of the fleet.
"""

from __future__ import annotations

import asyncio
import random

from monitor.deadline_queue import DeadlineQueue
from monitor.ratelimit import LocalRateLimiter
from monitor.scheduler import PollScheduler

INTERVAL = 15.0
RATE = 20.0  # polls per second the bucket's limiter grants


def backlogged(own: int, now: float) -> DeadlineQueue[str]:
    """A bucket over budget: ``own`` tasks, all overdue, by up to one rotation."""
    q: DeadlineQueue[str] = DeadlineQueue(jitter=0.0, rng=random.Random(1))
    q.add_bucket("a")
    for i in range(own):
        q.add(f"own{i:04d}", "a", INTERVAL, now - own / RATE + i / RATE)
    return q


def serve(q: DeadlineQueue[str], start: float, polls: int) -> list[tuple[str, float]]:
    """Grant ``polls`` requests at the limiter's rate, each poll returning at once."""
    served = []
    for n in range(polls):
        now = start + n / RATE
        popped = q.pop_due("a", now)
        if popped is None:
            continue
        served.append((popped[0], now))
        q.finish(popped[0], now)
    return served


class TestTakeoverOverBudget:
    def test_taken_tasks_go_ahead_of_the_backlog_in_the_given_order(self) -> None:
        now = 1000.0
        q = backlogged(700, now)
        # The dead replica's tasks: a mix of overdue (less than the backlog's head) and not yet
        # due by their own rhythm, most overdue first as the coordinator orders them.
        taken = [(f"dead{i:03d}", "a", INTERVAL, now - 20.0 + i * 0.1) for i in range(300)]
        assert q.take_over(taken, now, backlog=1.0) == 300
        served = serve(q, now, 300)
        assert [key for key, _ in served] == [key for key, *_ in taken]

    def test_each_is_polled_within_its_share_of_the_rate_while_the_fleet_stays_over_budget(
        self,
    ) -> None:
        now = 1000.0
        q = backlogged(700, now)
        serve(q, now - 5.0, 100)  # the backlog keeps rotating up to the takeover
        taken = [(f"dead{i:03d}", "a", INTERVAL, now - 40.0 + i * 0.15) for i in range(330)]
        q.take_over(taken, now, backlog=1.0)
        served = serve(q, now, 1200)
        first: dict[str, float] = {}
        for key, at in served:
            first.setdefault(key, at)
        bound = max(INTERVAL, len(taken) / RATE)
        assert all(first[key] - now <= bound for key, *_ in taken)
        # The backlog keeps being served too, once the taken tasks have had their turn.
        assert sum(1 for key, _ in served if key.startswith("own")) >= 700

    def test_under_budget_each_keeps_its_own_rhythm(self) -> None:
        now = 1000.0
        q: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
        q.add_bucket("a")
        q.add("own", "a", INTERVAL, now + 3.0)  # nothing waiting: the budget keeps up
        q.take_over(
            [("soon", "a", INTERVAL, now + 1.0), ("later", "a", INTERVAL, now + 9.0)], now, 1.0
        )
        assert q.due_of("soon") == now + 1.0
        assert q.due_of("later") == now + 9.0
        assert q.pop_due("a", now + 0.5) is None

    def test_a_short_wait_is_not_a_backlog(self) -> None:
        now = 1000.0
        q: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
        q.add_bucket("a")
        q.add("own", "a", INTERVAL, now - 0.2)  # waiting for the limiter for a moment only
        q.take_over([("later", "a", INTERVAL, now + 9.0)], now, backlog=1.0)
        assert q.due_of("later") == now + 9.0

    def test_a_known_task_is_pulled_in_never_postponed(self) -> None:
        now = 1000.0
        q = backlogged(50, now)
        q.add("known", "a", INTERVAL, now + 10.0)
        assert q.take_over([("known", "a", INTERVAL, now + 5.0)], now, backlog=1.0) == 1
        assert [key for key, _ in serve(q, now, 1)] == ["known"]


class TestSchedulerTakeover:
    async def test_the_scheduler_polls_taken_tasks_before_its_overdue_backlog(self) -> None:
        clock = [500.0]
        started: list[str] = []

        async def poll(key: str) -> None:
            started.append(key)

        scheduler: PollScheduler[str] = PollScheduler(
            poll, jitter=0.0, clock=lambda: clock[0], max_in_flight=1
        )
        scheduler.add_bucket("a", LocalRateLimiter(10_000, 1.0, key="free"))
        for i in range(20):
            scheduler.add(f"own{i:02d}", "a", INTERVAL, due_in=-30.0 + i)
        taken = [(f"dead{i}", "a", INTERVAL, due_in) for i, due_in in enumerate([-12.0, -3.0, 4.0])]
        assert scheduler.take_over(taken) == 3
        assert scheduler.due_of("dead2") is not None
        assert scheduler.due_of("dead2") < scheduler.due_of("own00")  # type: ignore[operator]
        scheduler.start()
        try:
            for _ in range(2000):
                if len(started) >= 23:
                    break
                await asyncio.sleep(0.001)
        finally:
            await scheduler.stop()
        assert started[:3] == ["dead0", "dead1", "dead2"]
        assert sorted(started[3:23]) == [f"own{i:02d}" for i in range(20)]
