"""Time sources for the simulator.

Lifecycles, the arrival counter and signature timestamps all read one injectable clock, so
tests can freeze or step time instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock for durations and a wall clock for timestamps."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The process clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; both readings move together."""

    def __init__(self, wall: float | None = None, monotonic: float = 1000.0) -> None:
        self._wall = time.time() if wall is None else wall
        self._mono = monotonic

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._mono += seconds
        self._wall += seconds
