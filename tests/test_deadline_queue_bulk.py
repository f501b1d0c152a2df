"""Adding a restart's whole table at once schedules exactly what adding task by task does."""

from __future__ import annotations

import random

import pytest

from monitor.deadline_queue import DeadlineQueue


def fresh() -> DeadlineQueue[str]:
    q: DeadlineQueue[str] = DeadlineQueue(jitter=0.0)
    q.add_bucket("a")
    q.add_bucket("b")
    return q


def drain(q: DeadlineQueue[str], bucket: str, now: float) -> list[tuple[str, float]]:
    out = []
    while (popped := q.pop_due(bucket, now)) is not None:
        out.append(popped)
    return out


class TestAddMany:
    def test_the_same_order_and_figures_as_one_by_one(self) -> None:
        rng = random.Random(3)
        items = [
            (f"k{i}", rng.choice("ab"), rng.choice([5.0, 15.0]), rng.uniform(-50, 50))
            for i in range(2000)
        ]
        one, many = fresh(), fresh()
        for key, bucket, interval, due in items:
            one.add(key, bucket, interval, due)
        many.add(items[0][0], items[0][1], items[0][2], items[0][3])  # one already there
        assert many.add_many(items) == len(items) - 1
        for bucket in "ab":
            assert many.task_count(bucket) == one.task_count(bucket)
            assert many.required_rate(bucket) == pytest.approx(one.required_rate(bucket))
            assert drain(many, bucket, 100.0) == drain(one, bucket, 100.0)

    def test_a_task_removed_while_in_flight_is_revived_after_its_poll(self) -> None:
        q = fresh()
        q.add("x", "a", 10.0, 0.0)
        assert q.pop_due("a", 0.0) == ("x", 0.0)
        q.remove("x")
        assert q.add_many([("x", "a", 10.0, 1.0), ("y", "a", 10.0, 2.0)]) == 2
        assert q.is_in_flight("x")
        q.finish("x", 0.5)
        assert drain(q, "a", 5.0) == [("x", 1.0), ("y", 2.0)]

    def test_an_unknown_bucket_is_refused(self) -> None:
        with pytest.raises(KeyError):
            fresh().add_many([("x", "nowhere", 10.0, 0.0)])
