"""The status page's ``StatusSource`` over today's ``Daemon``.

The one place that knows where the page's figures live in the daemon; when the task table,
the budget and the alert state become components of their own, only this adapter changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.daemon import Daemon
from monitor.http.status_page import AccountBudget
from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord


class DaemonStatusSource:
    """Reads a running daemon for the status page (see ``status_page.StatusSource``)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def tasks(self) -> Sequence[Task]:
        # A copy of the table's values: iterated in the page thread while polling goes on.
        return list(self._daemon.tasks.values())

    def task(self, key: TaskKey) -> Task | None:
        return self._daemon.get(key)

    def budgets(self) -> Sequence[AccountBudget]:
        if not self._daemon.ready:
            return []
        required_and_capacity = self._daemon.budget_by_account()
        out: list[AccountBudget] = []
        for name, runtime in sorted(self._daemon.accounts.items()):
            required, capacity = required_and_capacity.get(name, (0.0, 0.0))
            limiters = [
                lim for key, lim in self._daemon.limiters.items() if key.split("@", 1)[0] == name
            ]
            if limiters:
                limit = sum(lim.limit / lim.window for lim in limiters)
                effective = sum(lim.effective_rate for lim in limiters)
            else:  # no task yet: nothing has been throttled either
                limit = runtime.rate_limit / runtime.rate_window
                effective = capacity
            out.append(AccountBudget(name, required, capacity, limit, effective))
        return out

    def firing_alerts(self) -> Sequence[AlertRecord]:
        return self._daemon.alerts.firing() if self._daemon.ready else []

    # Before the daemon has started (or once it is stopping) there is no store to ask: the
    # page shows no transitions rather than an error.

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        if not self._daemon.ready:
            return []
        return await self._daemon.store.recent_transitions(limit)

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        if not self._daemon.ready:
            return []
        return await self._daemon.store.transitions(key, limit=limit, newest_first=True)
