"""A task's life as the task page's SVG timeline draws it: bands, marks and ticks, in pixels.

Pure geometry from the task and its transitions; the SVG markup is in ``templates/task.html``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from monitor.models import Status, Task, Transition

TIMELINE_WIDTH: Final = 960.0
TIMELINE_LEFT: Final = 8.0
TIMELINE_RIGHT: Final = 8.0
BAND_TOP: Final = 8.0
BAND_HEIGHT: Final = 40.0
AXIS_Y: Final = BAND_TOP + BAND_HEIGHT + 22.0
TIMELINE_HEIGHT: Final = AXIS_Y + 22.0
# Candidate tick steps in seconds: a person reads round times.
_TICK_STEPS: Final = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 2592000,
)  # fmt: skip
MAX_TICKS: Final = 8


@dataclass(frozen=True, slots=True)
class Band:
    status: Status
    start: float
    end: float
    x: float
    width: float


@dataclass(frozen=True, slots=True)
class Mark:
    transition: Transition
    x: float


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    bands: list[Band]
    marks: list[Mark]
    ticks: list[Tick]
    start: float
    end: float
    truncated: bool
    width: float = TIMELINE_WIDTH
    height: float = TIMELINE_HEIGHT
    band_top: float = BAND_TOP
    band_height: float = BAND_HEIGHT
    axis_y: float = AXIS_Y


def _ticks(start: float, end: float, x_of: Callable[[float], float]) -> list[Tick]:
    span = end - start
    step = next((s for s in _TICK_STEPS if span / s <= MAX_TICKS), _TICK_STEPS[-1])
    if span > 2 * 86400:
        fmt = "%m-%d %H:%M"
    elif step >= 60:
        fmt = "%H:%M"
    else:
        fmt = "%H:%M:%S"
    ticks = []
    t = math.ceil(start / step) * step
    while t <= end:
        label = dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt)
        ticks.append(Tick(round(x_of(t), 2), label))
        t += step
    return ticks


def timeline(
    task: Task, history: Sequence[Transition], now: float, truncated: bool = False
) -> Timeline:
    """The task's life as bands, one per status it was in, oldest first.

    ``history`` is oldest first. The first band is the status before the first transition,
    from registration (when the whole history is there); each transition starts a band that
    lasts until the next one, the last until ``now``.
    """
    spans: list[tuple[Status, float]] = []  # (status, began at)
    if history and not truncated:
        first_at = history[0].at
        began = min(task.registered_at, first_at) if task.registered_at > 0 else first_at
        spans.append((history[0].from_status, began))
    elif not history:
        began = task.registered_at if task.registered_at > 0 else task.status_since
        spans.append((task.status, min(began, task.status_since or began)))
    spans.extend((t.to_status, t.at) for t in history)
    start = spans[0][1]
    end = max(now, spans[-1][1])
    span = max(end - start, 1.0)
    plot = TIMELINE_WIDTH - TIMELINE_LEFT - TIMELINE_RIGHT

    def x_of(ts: float) -> float:
        return TIMELINE_LEFT + (ts - start) / span * plot

    bands: list[Band] = []
    for i, (status, began) in enumerate(spans):
        ended = spans[i + 1][1] if i + 1 < len(spans) else end
        x = x_of(began)
        # At least a sliver, so a status held for a moment still shows.
        width = max(x_of(ended) - x, 1.0)
        bands.append(Band(status, began, ended, round(x, 2), round(width, 2)))
    marks = [Mark(t, round(x_of(t.at), 2)) for t in history]
    return Timeline(bands, marks, _ticks(start, end, x_of), start, end, truncated)
