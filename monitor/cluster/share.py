"""This replica's share of the work, as the daemon sees it: everything, alone on SQLite
(:class:`~monitor.cluster.solo.Solo`), or its part of a cluster on Redis
(:class:`~monitor.cluster.replica.Replica`). The daemon composes one of the two and asks it what
to poll, what to alert on and which series to export; nothing else in the daemon knows about
replicas.

A share is made before the poller and the alert engine (they ask it what this replica owns)
and is handed them when it starts (it tells them what it gains and loses).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Protocol

from monitor.http.ports import AlertReader
from monitor.models import Task, TaskKey

if TYPE_CHECKING:
    from monitor.alerts.engine import AlertEngine
    from monitor.cluster.writers import WriterOf
    from monitor.poller import Poller

__all__ = ["Share", "owned_by_account"]


class Share(Protocol):
    """What the daemon asks about this replica's share of the work."""

    replica_id: str

    def owns(self, key: TaskKey) -> bool: ...

    def alerts_on(self, key: TaskKey) -> bool: ...

    def alerts_monitor(self) -> bool: ...

    @property
    def leads(self) -> bool: ...

    @property
    def alone(self) -> bool: ...

    @property
    def store_up(self) -> bool: ...

    def writer(self) -> WriterOf: ...

    def alert_reader(self) -> AlertReader: ...

    async def start(self, poller: Poller, alerts: AlertEngine) -> None: ...

    async def stop(self) -> None: ...


def owned_by_account(tasks: Collection[Task], owns: Callable[[TaskKey], bool]) -> Counter[str]:
    return Counter(t.account for t in tasks if not t.final and owns(t.key))
