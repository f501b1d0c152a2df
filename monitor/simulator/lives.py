"""How simulated tasks live: a task's durations (:class:`Life`), the bounds random lives are
drawn from (:class:`LifeRange`) and the callbacks a timeline plans (:class:`PlannedEvent`). Pure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INF",
    "LEAVE_API",
    "LEAVE_IDLE_TIMEOUT",
    "LEAVE_KICKED_BY_SERVER",
    "Life",
    "LifeRange",
    "PlannedEvent",
    "Range",
    "check_duration",
]

INF = math.inf

# LeaveCode of a 302 callback: 0 = stopped through DeleteCloudRecording, 99 = nobody published
# for MaxIdleTime, 3 = recorder kicked by the server (the default for other ends).
LEAVE_API = 0
LEAVE_KICKED_BY_SERVER = 3
LEAVE_IDLE_TIMEOUT = 99


def check_duration(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Life:
    """How one task lives, in seconds of the simulator's clock.

    ``in_progress=None`` records until stopped. ``hang_idle`` keeps the task Idle forever,
    whatever its MaxIdleTime says (the hang the monitor must notice).
    """

    idle: float = 1.0
    in_progress: float | None = None
    exited: float = 2.0
    leave_code: int = LEAVE_KICKED_BY_SERVER
    hang_idle: bool = False

    def __post_init__(self) -> None:
        check_duration("idle", self.idle)
        if self.in_progress is not None:
            check_duration("in_progress", self.in_progress)
        check_duration("exited", self.exited)


Range = tuple[float, float]


def _draw(rng: random.Random, bounds: Range) -> float:
    lo, hi = bounds
    return lo if lo == hi else rng.uniform(lo, hi)


@dataclass(frozen=True, slots=True)
class LifeRange:
    """Bounds from which random lives are drawn (for created tasks and unspecified lives)."""

    idle: Range = (0.5, 2.0)
    in_progress: Range | None = None
    exited: Range = (1.0, 3.0)
    leave_codes: tuple[int, ...] = (LEAVE_KICKED_BY_SERVER,)
    hang_idle: float = 0.0  # probability of an idle hang

    def __post_init__(self) -> None:
        ranges: list[tuple[str, Range | None]] = [
            ("idle", self.idle),
            ("in_progress", self.in_progress),
            ("exited", self.exited),
        ]
        for name, bounds in ranges:
            if bounds is None:
                continue
            check_duration(name, bounds[0])
            check_duration(name, bounds[1])
            if bounds[0] > bounds[1]:
                raise ValueError(f"{name}: lower bound {bounds[0]} exceeds upper {bounds[1]}")
        if not self.leave_codes:
            raise ValueError("leave_codes must not be empty")
        if not 0.0 <= self.hang_idle <= 1.0:
            raise ValueError("hang_idle must be a probability between 0 and 1")

    def draw(self, rng: random.Random) -> Life:
        return Life(
            idle=_draw(rng, self.idle),
            in_progress=None if self.in_progress is None else _draw(rng, self.in_progress),
            exited=_draw(rng, self.exited),
            leave_code=rng.choice(self.leave_codes),
            hang_idle=self.hang_idle > 0 and rng.random() < self.hang_idle,
        )


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One callback of a timeline; ``key`` tells apart two events of one type (305 twice)."""

    key: str
    event_type: int
    at: float  # monotonic
    payload: dict[str, Any]
    group: int = 3  # EventGroupId: 3 cloud recording, 8 web-page recording
