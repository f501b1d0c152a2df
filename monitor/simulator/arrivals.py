"""Arrival counting: the strict per-second limiter and the log tests and benchmarks read.

The real service counts requests by their arrival time, per (credential, action). The counter
here does the same over a sliding window, so it is at least as strict as any fixed
one-second bucketing the service could use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Arrival:
    """One request as it reached the simulator.

    ``code`` is the error code answered, "" for a success; a fault that answered no API error
    (a drop, a 5xx, a malformed body) leaves it as "!<kind>". ``fault`` names the injected
    fault kind, "" when none fired.
    """

    mono: float
    wall: float
    secret_id: str
    action: str
    region: str
    task_id: str
    code: str = ""
    fault: str = ""


def max_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of sorted ``times`` falling in any interval (t - window, t]."""
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        edge = t - window
        while times[lo] <= edge:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class SlidingWindowCounter:
    """Counts arrivals per key within (t - window, t].

    Every arrival is counted, including those that end up rejected: the service reports the
    number of requests it received, not the number it served.
    """

    __slots__ = ("_hits", "window")

    def __init__(self, window: float = 1.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def hit(self, key: tuple[str, str], t: float) -> int:
        """Record an arrival at ``t`` and return how many arrivals of ``key``, itself included,
        fall within (t - window, t]."""
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        hits.append(t)
        edge = t - self.window
        while hits[0] <= edge:
            hits.popleft()
        return len(hits)

    def clear(self) -> None:
        self._hits.clear()


class ArrivalLog:
    """Every arrival in order, bounded so long benchmarks stay light.

    Counters (``total``, ``limited``) keep counting after old entries fall off the end.
    """

    def __init__(self, maxlen: int = 200_000) -> None:
        self._items: deque[Arrival] = deque(maxlen=maxlen)
        self.total = 0
        # RequestLimitExceeded answers given by the strict counter (injected storms excluded).
        self.limited = 0

    def record(self, arrival: Arrival) -> Arrival:
        self._items.append(arrival)
        self.total += 1
        return arrival

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Arrival]:
        return iter(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.total = 0
        self.limited = 0

    def select(
        self,
        action: str | None = None,
        secret_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Iterable[Arrival]:
        """Arrivals matching every given filter; ``since``/``until`` are wall-clock bounds."""
        for a in self._items:
            if action is not None and a.action != action:
                continue
            if secret_id is not None and a.secret_id != secret_id:
                continue
            if since is not None and a.wall < since:
                continue
            if until is not None and a.wall > until:
                continue
            yield a

    def max_in_window(
        self,
        action: str,
        window: float = 1.0,
        secret_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """Most arrivals of ``action`` within any interval of length ``window``."""
        times = [a.mono for a in self.select(action, secret_id, since, until)]
        return max_in_window(times, window)

    def count(self, action: str | None = None, code: str | None = None) -> int:
        return sum(
            1
            for a in self._items
            if (action is None or a.action == action) and (code is None or a.code == code)
        )
