"""The deadline queue: ordering, changes and bookkeeping, pure (time and randomness given)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.deadline_queue import DeadlineQueue, jittered


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
