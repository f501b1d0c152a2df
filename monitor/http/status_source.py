"""The status page's ``StatusSource`` over the daemon's components.

The one place that knows where the page's figures live: the task table (``TaskRegistry``),
the budget (``Budget`` and the poller's required rates), the alert state and the store's
history. It reads them when a page is asked for, not when the app is built, so the page can be
served before the components exist (an empty page) and follows a reload's new budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from monitor.budget import Budget
from monitor.http.ports import AlertReader
from monitor.http.status_page import AccountBudget
from monitor.models import Task, TaskKey, Transition
from monitor.poller import Poller
from monitor.registry import TaskRegistry
from monitor.store.base import AlertRecord, Store


class StatusParts(Protocol):
    """The components the page reads (the daemon has every one of them)."""

    @property
    def ready(self) -> bool: ...

    @property
    def registry(self) -> TaskRegistry: ...

    @property
    def budget(self) -> Budget: ...

    @property
    def poller(self) -> Poller: ...

    @property
    def fleet_alerts(self) -> AlertReader:
        """Firing alerts of the whole fleet (every replica's, with several on one Redis)."""
        ...

    @property
    def store(self) -> Store: ...


def account_budgets(budget: Budget, poller: Poller) -> list[AccountBudget]:
    """Every configured account's budget, summed over its (account, access host) buckets."""
    required_and_capacity = budget.by_account(poller.required_rate)
    out: list[AccountBudget] = []
    for name, account in sorted(budget.accounts.items()):
        required, capacity = required_and_capacity.get(name, (0.0, account.limiter.capacity))
        limiters = [budget.limiter(b) for b in budget.buckets() if b.account == name]
        if limiters:
            limit = sum(lim.limit / lim.window for lim in limiters)
            effective = sum(lim.effective_rate for lim in limiters)
        else:  # no task yet: no limiter made, nothing throttled
            limit = account.limiter.limit / account.limiter.window
            effective = capacity
        out.append(AccountBudget(name, required, capacity, limit, effective))
    return out


class ComponentStatusSource:
    """Reads the daemon's components for the status page (see ``status_page.StatusSource``).

    Until the components are started (and once they are stopping) the page shows an empty
    fleet rather than an error.
    """

    def __init__(self, parts: StatusParts) -> None:
        self._parts = parts

    def tasks(self) -> Sequence[Task]:
        # A new list: iterated in the page thread while the registry changes.
        return self._parts.registry.tasks()

    def task(self, key: TaskKey) -> Task | None:
        return self._parts.registry.get(key)

    def budgets(self) -> Sequence[AccountBudget]:
        if not self._parts.ready:
            return []
        return account_budgets(self._parts.budget, self._parts.poller)

    def firing_alerts(self) -> Sequence[AlertRecord]:
        return self._parts.fleet_alerts.firing() if self._parts.ready else []

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        if not self._parts.ready:
            return []
        return await self._parts.store.recent_transitions(limit)

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        if not self._parts.ready:
            return []
        return await self._parts.store.transitions(key, limit=limit, newest_first=True)
