"""Long work on the event loop cut into slices of a few milliseconds (docs/architecture.md).

A loop over many items (the alert sweep over every task, the notices of thousands of alerts
firing at once, rows converted for the store) asks ``due()`` once per item and, when it says
so, awaits ``pause()``. ``due`` looks at the clock only every few items (a clock read costs more
than most items) and says yes when the slice is used up, or at the latest every ``most`` items
whatever the clock says, so code that relies on a yield between batches still gets one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

__all__ = ["SLICE_SECONDS", "Slices"]

# How long one slice may hold the loop: /-/healthy and the polls wait at most about this long.
SLICE_SECONDS: Final = 0.002
_CHECK_EVERY: Final = 16


class Slices:
    """Where one run of long work on the loop stands in its current slice."""

    __slots__ = ("_count", "_most", "_seconds", "_started")

    def __init__(self, *, most: int = 1000, seconds: float = SLICE_SECONDS) -> None:
        if most < 1:
            raise ValueError("most must be at least 1")
        self._most = most
        self._seconds = seconds
        self._count = 0
        self._started = time.perf_counter()

    def due(self) -> bool:
        """Count one item; True when the work should yield to the loop before the next."""
        count = self._count = self._count + 1
        if count >= self._most:
            return True
        if count % _CHECK_EVERY:
            return False
        return time.perf_counter() - self._started >= self._seconds

    async def pause(self) -> None:
        """Yield to the loop once and start a new slice."""
        await asyncio.sleep(0)
        self._count = 0
        self._started = time.perf_counter()
