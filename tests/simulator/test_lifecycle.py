"""A simulated task's life: phases, statuses and planned callbacks, pure."""

from __future__ import annotations

import random

import pytest

from monitor.models import Status
from monitor.simulator import Life, LifeRange
from monitor.simulator.lifecycle import SimTask, TaskSpec, plan
from tests.simulator.helpers import APP


def create(
    life: Life,
    created: float = 0.0,
    max_idle_time: float | None = None,
    expire_after: float | None = None,
) -> SimTask:
    """Task "t" of APP created at ``created`` with ``life``."""
    spec = TaskSpec(APP, max_idle_time=max_idle_time, expire_after=expire_after)
    return SimTask.create(spec, created, 0.0, task_id="t", life=life, room_id=1, user_id="u")


class TestLifecycle:
    def test_a_life_goes_idle_in_progress_exited_then_gone(self) -> None:
        task = create(Life(idle=1, in_progress=2, exited=3), created=100.0)
        assert [task.api_status(t) for t in (100.0, 100.99, 101.0, 102.99, 103.0, 105.99)] == [
            Status.IDLE,
            Status.IDLE,
            Status.IN_PROGRESS,
            Status.IN_PROGRESS,
            Status.EXITED,
            Status.EXITED,
        ]
        assert task.api_status(106.0) is None

    def test_an_idle_hang_stays_idle_whatever_max_idle_time_says(self) -> None:
        task = create(Life(hang_idle=True), max_idle_time=5)
        assert task.api_status(1e9) is Status.IDLE

    def test_a_task_idle_for_max_idle_time_exits_with_leave_code_99(self) -> None:
        p = plan(Life(idle=60, exited=2), created=10.0, max_idle_time=30)
        assert p.in_progress_at == float("inf")
        assert (p.exited_at, p.gone_at, p.leave_code) == (40.0, 42.0, 99)

    def test_stopping_an_idle_task_skips_in_progress_and_only_counts_once(self) -> None:
        task = create(Life(idle=5, exited=1))
        assert task.stop(2.0, 0)
        assert not task.stop(2.5, 3)
        assert task.leave_code == 0
        assert task.api_status(2.0) is Status.EXITED
        assert task.api_status(6.0) is None  # never InProgress, gone at 3.0

    def test_finishing_a_task_makes_it_vanish_at_once(self) -> None:
        task = create(Life(idle=0))
        assert task.finish(4.0)
        assert task.api_status(4.0) is None
        assert not task.finish(5.0)

    def test_an_expired_task_is_invisible_while_its_life_goes_on(self) -> None:
        task = create(Life(idle=0), expire_after=10)
        assert task.api_status(9.9) is Status.IN_PROGRESS
        assert task.api_status(10.0) is None
        assert task.info(10.0)["phase"] == "IN_PROGRESS"

    def test_random_lives_are_reproducible_from_a_seed_and_within_bounds(self) -> None:
        bounds = LifeRange(idle=(1, 2), in_progress=(10, 20), exited=(3, 4), leave_codes=(1, 99))
        lives = [bounds.draw(random.Random(42)) for _ in range(2)]
        assert lives[0] == lives[1]
        many = [bounds.draw(random.Random(i)) for i in range(50)]
        assert all(1 <= x.idle <= 2 and 3 <= x.exited <= 4 for x in many)
        assert all(x.in_progress is not None and 10 <= x.in_progress <= 20 for x in many)
        assert {x.leave_code for x in many} == {1, 99}

    def test_a_negative_duration_is_refused(self) -> None:
        with pytest.raises(ValueError, match="idle"):
            Life(idle=-1)
