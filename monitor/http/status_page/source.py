"""What the status page reads: the ``StatusSource`` protocol and the budget figures it gives.

The page sees this narrow protocol, never the daemon; ``monitor/http/status_source.py`` is the
implementation over the daemon's components, and the tests give a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord


@dataclass(frozen=True, slots=True)
class AccountBudget:
    """One account's request budget, in requests per second, summed over its buckets."""

    account: str
    required: float  # what every task's interval together needs
    capacity: float  # what the limiter lets out: the limit less the guard
    limit: float  # the configured quota (rate_limit / rate_window)
    effective: float  # allowed now, after backoff from throttling

    @property
    def over(self) -> bool:
        """The same condition as ``MonitorOverBudget``: required beyond what may be sent."""
        return self.required > self.capacity


class StatusSource(Protocol):
    """Everything the status page reads; nothing else of the daemon is visible to it."""

    def tasks(self) -> Sequence[Task]:
        """A snapshot of every registered task: a new sequence, safe to iterate off the loop
        while the table changes (the tasks in it are the live records)."""
        ...

    def task(self, key: TaskKey) -> Task | None:
        """One task, or None when it is not registered."""
        ...

    def budgets(self) -> Sequence[AccountBudget]:
        """The budget of every configured account."""
        ...

    def firing_alerts(self) -> Sequence[AlertRecord]:
        """Alerts firing now, oldest first."""
        ...

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        """The newest transitions of the whole fleet, newest first."""
        ...

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        """The task's newest ``limit`` transitions, newest first."""
        ...
