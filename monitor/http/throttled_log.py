"""A warning for refusals anyone can provoke: one line a period, saying how many there were."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

UNAUTHORIZED_LOG_EVERY = 60.0


@dataclass(slots=True)
class ThrottledWarning:
    """Logs ``event`` on ``logger`` at most once every ``every`` seconds, with ``refused``: how
    many refusals there were since the last line, the one logged included."""

    logger: Any  # a structlog logger
    event: str
    every: float = UNAUTHORIZED_LOG_EVERY
    _last: float = field(default=-math.inf, init=False)
    _since: int = field(default=0, init=False)

    def refused(self, **fields: Any) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last >= self.every:
            self.logger.warning(self.event, **fields, refused=self._since)
            self._last = now
            self._since = 0
