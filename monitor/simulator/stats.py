"""The simulator's statistics: what arrived, per action, and what it answered.

Read by tests, the bench and the control surface (``GET /-/sim/stats``) to check a client's
behaviour against the service's limits: how many requests came, the most within any window,
which codes they got.
"""

from __future__ import annotations

from typing import Any

from monitor.simulator.arrivals import Arrival, ArrivalLog

__all__ = ["arrival_stats"]


def arrival_stats(
    arrivals: ArrivalLog,
    window: float,
    secret_id: str | None,
    since: float | None,
    until: float | None,
) -> dict[str, Any]:
    """Arrival statistics per action, over the log (optionally a wall-clock range); the
    simulator adds the settings and counters they are judged against."""
    by_action: dict[str, list[Arrival]] = {}
    first: float | None = None
    last: float | None = None
    for a in arrivals.select(None, secret_id, since, until):
        by_action.setdefault(a.action, []).append(a)
        if first is None:
            first = a.wall
        last = a.wall
    actions: dict[str, Any] = {}
    for action, items in sorted(by_action.items()):
        codes: dict[str, int] = {}
        for a in items:
            codes[a.code] = codes.get(a.code, 0) + 1
        actions[action] = {
            "arrivals": len(items),
            "max_in_window": arrivals.max_in_window(action, window, secret_id, since, until),
            "codes": codes,
        }
    return {
        "arrivals": sum(len(v) for v in by_action.values()),
        "total": arrivals.total,
        "throttled": arrivals.limited,
        "window": window,
        "first_wall": first,
        "last_wall": last,
        "actions": actions,
    }
