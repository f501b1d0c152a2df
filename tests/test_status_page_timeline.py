"""The task page's timeline, pure: bands, marks and ticks from a task's transitions."""

from __future__ import annotations

import pytest

from monitor.http.status_page.timeline import timeline
from monitor.models import Source, Status
from tests.status_page_support import (
    T0,
    make_task,
    move,
)


class TestTimeline:
    def test_one_band_per_status_in_order_with_a_mark_per_transition(self) -> None:
        task = make_task("t", Status.PENDING)
        history = [
            move(task, Status.IDLE, T0 + 10),
            move(task, Status.IN_PROGRESS, T0 + 20, Source.CALLBACK),
            move(task, Status.EXITED, T0 + 70),
        ]
        line = timeline(task, history, now=T0 + 100)
        assert [b.status for b in line.bands] == [
            Status.PENDING,
            Status.IDLE,
            Status.IN_PROGRESS,
            Status.EXITED,
        ]
        assert [(b.start, b.end) for b in line.bands] == [
            (T0, T0 + 10),
            (T0 + 10, T0 + 20),
            (T0 + 20, T0 + 70),
            (T0 + 70, T0 + 100),
        ]
        # Widths are proportional to time: the InProgress band is five times the Idle one.
        assert line.bands[2].width == pytest.approx(5 * line.bands[1].width, rel=1e-3)
        assert [m.transition.source for m in line.marks] == [
            Source.POLL,
            Source.CALLBACK,
            Source.POLL,
        ]
        assert [m.x for m in line.marks] == [b.x for b in line.bands[1:]]
        assert line.ticks, "a time axis"
        right = line.bands[-1].x + line.bands[-1].width
        assert all(line.bands[0].x <= t.x <= right for t in line.ticks)

    def test_a_task_never_changed_is_one_band(self) -> None:
        line = timeline(make_task("t", Status.PENDING), [], now=T0 + 5)
        assert [(b.status, b.start, b.end) for b in line.bands] == [(Status.PENDING, T0, T0 + 5)]

    def test_a_truncated_history_starts_at_its_first_kept_transition(self) -> None:
        task = make_task("t", Status.IDLE)
        history = [move(task, Status.IN_PROGRESS, T0 + 50), move(task, Status.EXITED, T0 + 60)]
        line = timeline(task, history, now=T0 + 61, truncated=True)
        assert [b.status for b in line.bands] == [Status.IN_PROGRESS, Status.EXITED]

    def test_a_status_held_for_a_moment_still_shows(self) -> None:
        task = make_task("t", Status.PENDING)
        history = [move(task, Status.IDLE, T0 + 1), move(task, Status.ENDED, T0 + 1.0001)]
        line = timeline(task, history, now=T0 + 86400)
        assert all(b.width >= 1.0 for b in line.bands)
