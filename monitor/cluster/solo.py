"""One replica alone on SQLite: it owns every task and leads.

A probe asks its store every second whether it takes writes (an SQLite file removed, replaced,
on a full or read-only disk): while it does not, the replica is not ready,
``trtc_monitor_store_up`` is 0, and every mutating API call and callback is answered 503 (the
writes themselves are refused by the store).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from typing import Final

from monitor.alerts.engine import AlertEngine
from monitor.cluster.share import owned_by_account
from monitor.cluster.writers import GuardedWriter, StoreGuard, WriterOf
from monitor.http.ports import AlertReader
from monitor.log import get_logger
from monitor.metrics import MonitorMetrics
from monitor.models import TaskKey
from monitor.poller import Poller
from monitor.registry import TaskRegistry
from monitor.store.base import Store, StoreHealth
from monitor.tracker import Tracker

__all__ = ["SOLO_PROBE_SECONDS", "Solo"]

# The logger the store_up and store_down lines have always come from.
log = get_logger("monitor.cluster.replica")

# How often Solo refreshes its gauges.
_SOLO_GAUGES_SECONDS: Final = 5.0
# How often Solo asks its store whether it takes writes.
SOLO_PROBE_SECONDS: Final = 1.0


class Solo:
    """One replica on SQLite: owns every task, leads; its store is up while it takes writes."""

    def __init__(
        self,
        replica_id: str,
        *,
        store: Store,
        tracker: Tracker,
        registry: TaskRegistry,
        metrics: MonitorMetrics,
        accounts: Callable[[], Collection[str]],
        probe_every: float = SOLO_PROBE_SECONDS,
    ) -> None:
        self.replica_id = replica_id
        self._store = store
        self._alerts: AlertEngine | None = None
        self._tracker = tracker
        self._registry = registry
        self._metrics = metrics
        self._accounts = accounts
        self._probe_every = probe_every
        self._open = False
        self._health = StoreHealth(True)
        self._kick = asyncio.Event()
        self._writer = GuardedWriter(tracker, StoreGuard(self))
        self._tasks: list[asyncio.Task[None]] = []

    def owns(self, key: TaskKey) -> bool:
        return True

    def alerts_on(self, key: TaskKey) -> bool:
        return True

    def alerts_monitor(self) -> bool:
        return True

    @property
    def leads(self) -> bool:
        return True

    @property
    def alone(self) -> bool:
        return True

    @property
    def store_up(self) -> bool:
        return self._open and self._health.up

    @property
    def store_health(self) -> StoreHealth:
        """What the last probe found: why the store takes no writes, if it does not."""
        return self._health

    def writer(self) -> WriterOf:
        return self._writer

    def alert_reader(self) -> AlertReader:
        assert self._alerts is not None, "not started"
        return self._alerts

    async def start(self, poller: Poller, alerts: AlertEngine) -> None:
        """Alone, this replica polls everything: the poller needs no telling."""
        self._alerts = alerts
        self._open = True
        self._metrics.replica_info.labels(self.replica_id, "sqlite").set(1)
        self._gauges()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._probe())]

    def _gauges(self) -> None:
        self._metrics.store_up.set(1 if self.store_up else 0)
        owned = owned_by_account(self._registry.tasks(), self.owns)
        self._metrics.set_cluster(1, owned, self._accounts())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_SOLO_GAUGES_SECONDS)
            self._gauges()

    def kick(self) -> None:
        """A write failed: probe now rather than at the next period."""
        self._kick.set()

    async def _probe(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._probe_every):
                    await self._kick.wait()
            self._kick.clear()
            try:
                health = await self._store.probe()
            except Exception as exc:  # a probe that cannot tell counts as down
                health = StoreHealth(False, f"the store's probe failed ({type(exc).__name__})")
            if health != self._health:
                if health.up:
                    log.warning("store_up", store=str(self._store))
                else:
                    log.error(
                        "store_down",
                        store=str(self._store),
                        reason=health.reason,
                        restart_required=health.restart,
                    )
                self._health = health
                self._metrics.store_up.set(1 if self.store_up else 0)

    async def stop(self) -> None:
        self._open = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._metrics.store_up.set(0)
