"""One replica among several on one Redis (docs/high-availability.md): its share of the work.

:class:`Replica` follows a :class:`~monitor.cluster.coordinator.ClusterCoordinator`:

* **Polling.** The poller schedules the tasks this replica owns. Tasks gained in a membership
  change are reloaded from the store first (another replica changed them) and scheduled from
  their last observation, most overdue first; tasks lost stop being polled at once. Over
  budget a dead replica's tasks go ahead of the backlog, and a survivor that has polled its share
  of them holds its requests back until the others could have polled theirs
  (:mod:`monitor.cluster.takeover`).
* **Changes of others.** Registrations, removals, callbacks and transitions are announced on
  the change feed after they are stored (the tracker's events come after the store write);
  every other replica reloads the task from the store, and its owner acts: polls a new task at
  once, confirms a callback's exit by polling, and evaluates the task's alerts with the
  transition another replica recorded. A replica that handles a callback or an API call for a
  task it does not own reloads the task first, so it computes from what the store holds.
* **Alerts once.** A task's alerts are evaluated and sent only by its owner, the monitor-level
  ones only by the leader. After a membership change the alert engine hands over: the records
  of tasks it no longer owns are saved and dropped, those of tasks it now owns are loaded from
  the store, and until that is done it alerts on nothing (a transition meanwhile is alerted by
  the next sweep, which is level-based), so an owner change neither repeats an alert nor loses
  a resolve.
* **Redis down.** A probe pings the store every heartbeat: ``store_up`` (readiness, and
  ``trtc_monitor_store_up``). Meanwhile writes fail (503), the shared limiter waits, and after
  ``member_timeout`` the membership counts this replica out, so it owns nothing and polls
  nothing. When Redis answers again, the replica rejoins, reloads the table and resumes.
* **Resync.** Pub/sub keeps nothing for a replica that is not listening, so the table is
  compared with the store when the feed reconnects, when the store comes back, and every
  ``RESYNC_SECONDS``: a lost message costs a delay, never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any, Final

from monitor.alerts.engine import AlertEngine
from monitor.cluster.coordinator import ClusterCoordinator, last_observed
from monitor.cluster.feed import Change, ChangeKind
from monitor.cluster.share import owned_by_account
from monitor.cluster.takeover import TakeoverClaims, TakeoverHold, share_takeover
from monitor.cluster.writers import GuardedWriter, OwnerGuard, WriterOf
from monitor.config import ClusterConfig
from monitor.events import (
    EventBus,
    TaskObserved,
    TaskRegistered,
    TaskUpdated,
    TransitionRecorded,
    UploadChanged,
)
from monitor.http.ports import AlertReader
from monitor.log import get_logger
from monitor.metrics import MonitorMetrics
from monitor.models import Source, Status, Task, TaskKey
from monitor.poller import IntervalPolicy, Poller
from monitor.registry import TaskRegistry
from monitor.store.base import AlertRecord, Store, StoreError
from monitor.store.redis import RedisStore
from monitor.tracker import Tracker

__all__ = [
    "RESYNC_SECONDS",
    "Replica",
    "redis_store_of",
]

log = get_logger(__name__)

# Gained tasks reloaded from the store at once, concurrently, during a takeover.
_TAKE_CHUNK: Final = 64

# A full comparison of the table with the store this often, whatever the feed delivered.
RESYNC_SECONDS: Final = 30.0
# How often a replica reads every replica's firing alerts for its API and status page.
FLEET_ALERTS_SECONDS: Final = 5.0


class Replica:
    """One replica among several on one Redis. See the module docstring."""

    def __init__(
        self,
        store: RedisStore,
        config: ClusterConfig,
        *,
        tracker: Tracker,
        registry: TaskRegistry,
        intervals: IntervalPolicy,
        bus: EventBus,
        metrics: MonitorMetrics,
        accounts: Callable[[], Collection[str]],
        clock: Callable[[], float] = time.time,
        resync_every: float = RESYNC_SECONDS,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._registry = registry
        self._poller: Poller | None = None
        self._engine: AlertEngine | None = None
        self._bus = bus
        self._metrics = metrics
        self._accounts = accounts
        self._clock = clock
        self._resync_every = resync_every
        self._intervals = intervals
        self._probe_every = config.heartbeat
        self.coordinator = ClusterCoordinator(
            store.connection.client,
            store.connection.keys,
            config,
            tasks=registry.tasks,
            interval_of=intervals.of,
            on_gained=self._gained,
            on_lost=self._lost,
            on_change=self._received,
            on_resync=self._feed_back,
            on_members=lambda live: self._unsettle(),
            on_orphans=self._orphans_seen,
        )
        self.replica_id = self.coordinator.replica_id
        self._store_up = True
        # The alert handover: while a membership change is being settled, alert on nothing.
        self._generation = 0
        self._settled = False
        self._alert_owned: set[TaskKey] = set()
        self._alert_leading = False
        self._work: asyncio.Queue[Callable[[], Coroutine[Any, Any, None]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._writer = GuardedWriter(tracker, OwnerGuard(tracker, self.owns))
        self._fleet_alerts: list[AlertRecord] = []
        # Live tasks whose owner left in the membership change being handled, by account.
        self._orphans: dict[str, int] = {}
        connection = store.connection
        self._hold = TakeoverHold(
            TakeoverClaims(connection.client, connection.keys, self.replica_id)
        )

    # --- what the daemon asks --------------------------------------------------------------

    def owns(self, key: TaskKey) -> bool:
        return self.coordinator.owns(key)

    def alerts_on(self, key: TaskKey) -> bool:
        return self._settled and self.coordinator.owns(key)

    def alerts_monitor(self) -> bool:
        return self._settled and self._alert_leading

    @property
    def leads(self) -> bool:
        return self.coordinator.leads

    @property
    def alone(self) -> bool:
        return False

    @property
    def store_up(self) -> bool:
        return self._store_up

    @property
    def members(self) -> tuple[str, ...]:
        return self.coordinator.members

    def writer(self) -> WriterOf:
        return self._writer

    def alert_reader(self) -> AlertReader:
        return self

    def firing(self) -> list[AlertRecord]:
        """Every replica's firing alerts (``GET /api/v1/alerts`` answers for the whole fleet),
        from the shared alert state, refreshed every ``FLEET_ALERTS_SECONDS``; the alerts of
        what this replica owns come from its own engine, so its changes show at once."""
        mine = {r.fingerprint: r for r in self._alerts.firing()}
        others = [
            r
            for r in self._fleet_alerts
            if r.fingerprint not in mine
            and not (self.alerts_on(r.task) if r.task is not None else self.alerts_monitor())
        ]
        records = [*mine.values(), *others]
        return sorted(records, key=lambda r: (r.starts_at, r.alertname, r.fingerprint))

    # --- life cycle ------------------------------------------------------------------------

    @property
    def _poll(self) -> Poller:
        assert self._poller is not None, "not started"
        return self._poller

    @property
    def _alerts(self) -> AlertEngine:
        assert self._engine is not None, "not started"
        return self._engine

    async def start(self, poller: Poller, alerts: AlertEngine) -> None:
        """Announce this replica's changes, join, and start the probe and the resync; from now
        on ``poller`` follows what this replica owns and ``alerts`` hands over with it."""
        self._poller, self._engine = poller, alerts
        self._metrics.replica_info.labels(self.replica_id, "redis").set(1)
        self._metrics.store_up.set(1)
        self._bus.subscribe(TaskRegistered, self._on_registered)
        self._bus.subscribe(TransitionRecorded, self._on_transition)
        self._bus.subscribe(UploadChanged, self._on_upload)
        self._bus.subscribe(TaskObserved, self._on_observed)
        self._bus.subscribe(TaskUpdated, self._on_updated)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._worker()))
        await self.coordinator.start()
        self._tasks.append(loop.create_task(self._probe()))
        self._tasks.append(loop.create_task(self._periodic_resync()))
        self._tasks.append(loop.create_task(self._follow_fleet_alerts()))
        self._gauges()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._hold.stop()
        # Leave at once: the others take over now rather than after member_timeout.
        await self.coordinator.stop(leave=True)

    # --- membership ------------------------------------------------------------------------

    def _orphans_seen(self, overdue: dict[str, int]) -> None:
        self._orphans = overdue

    def _gained(self, due: list[tuple[TaskKey, float]]) -> None:
        keys = [key for key, _ in due]
        orphans, self._orphans = self._orphans, {}
        self._enqueue(lambda: self._take(keys, orphans))

    def _lost(self, keys: list[TaskKey]) -> None:
        self._poll.unfollow(keys)

    def _unsettle(self) -> None:
        # A takeover in progress is over: the next one counts afresh.
        self._hold.end()
        if self._orphans:
            # Tasks of a dead replica went to the others only: hold back for them.
            orphans, self._orphans = self._orphans, {}
            self._enqueue(lambda: self._hold_for(orphans, ()))
        self._settled = False
        self._generation += 1
        generation = self._generation
        self._enqueue(lambda: self._settle(generation))

    async def _take(self, keys: Sequence[TaskKey], orphans: dict[str, int] | None = None) -> None:
        """Gained tasks: reload each from the store, then poll it from its last observation.
        ``orphans``: the live tasks of a dead replica by account, whoever took them."""
        now = self._clock()
        taken: list[tuple[Task, float]] = []
        failed = False
        owned = [key for key in keys if self.owns(key)]
        if orphans:
            # Before the reload: the others learn at once that this replica has some to poll,
            # and whether the backlog alone is over budget is seen before they are queued.
            await self._hold_for(orphans, owned)
        # Reloaded a chunk at a time, concurrently: one round trip after another, a few hundred
        # tasks would wait a second or more before any of them is polled.
        for start in range(0, len(owned), _TAKE_CHUNK):
            chunk = owned[start : start + _TAKE_CHUNK]
            answers = await asyncio.gather(
                *(self._tracker.reload(key) for key in chunk), return_exceptions=True
            )
            for key, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, StoreError):
                    log.warning("cluster_takeover_reload_failed", error=str(answer))
                    failed = True  # the store is down: the rejoin after it comes back takes them
                    continue
                if isinstance(answer, BaseException):
                    raise answer
                _, task = answer
                if task is None or task.final or not self.owns(key):
                    continue
                seen = last_observed(task)
                interval = self._intervals.of(task)
                taken.append((task, 0.0 if seen is None else seen + interval - now))
            if failed:
                break
        taken = [(task, due_in) for task, due_in in taken if self.owns(task.key)]
        # All at once, in the coordinator's order: over budget they go ahead of the backlog.
        self._poll.take_over(taken)
        if not failed:
            log.info("cluster_tasks_taken", replica=self.replica_id, tasks=len(keys))

    async def _hold_for(self, orphans: dict[str, int], owned: Sequence[TaskKey]) -> None:
        share_takeover(
            self._hold, self._poll.scheduler, self._registry, orphans, owned, self.replica_id
        )

    async def _settle(self, generation: int) -> None:
        """Hand the alert records over after a membership change (module docstring)."""
        if generation != self._generation:
            return  # a later change is queued; it settles
        owned = {task.key for task in self._registry.tasks() if self.owns(task.key)}
        leading = self.coordinator.leads
        engine = self._alerts
        try:
            await engine.release(
                self._alert_owned - owned, monitor=self._alert_leading and not leading
            )
            await engine.adopt(
                owned - self._alert_owned, monitor=leading and not self._alert_leading
            )
        except StoreError as exc:
            log.warning("cluster_alert_handover_failed", error=str(exc))
            return  # stays unsettled: the next membership change or resync settles
        self._alert_owned = owned
        self._alert_leading = leading
        if generation == self._generation:
            self._settled = True

    # --- changes -----------------------------------------------------------------------------

    async def _announce(self, kind: ChangeKind, key: TaskKey) -> None:
        try:
            await self.coordinator.announce(kind, key)
        except Exception as exc:
            # The change is stored: the others' periodic resync carries it.
            log.warning("cluster_announce_failed", kind=kind, error=type(exc).__name__)

    async def _on_registered(self, event: TaskRegistered) -> None:
        await self._announce("registered", event.task.key)

    async def _on_transition(self, event: TransitionRecorded) -> None:
        self._hold.polled(event.task.account, event.task.key)
        t = event.transition
        if t.to_status is Status.REMOVED:
            kind: ChangeKind = "removed"
        elif t.source is Source.CALLBACK:
            kind = "callback"
        else:
            kind = "transition"
        await self._announce(kind, event.task.key)

    async def _on_updated(self, event: TaskUpdated) -> None:
        # The others reload the record: labels for their reads, the interval for its owner.
        await self._announce("transition", event.task.key)

    async def _on_upload(self, event: UploadChanged) -> None:
        await self._announce("callback", event.task.key)

    async def _on_observed(self, event: TaskObserved) -> None:
        self._hold.polled(event.task.account, event.task.key)
        # Only the owner polls: an observation of a task owned elsewhere came from a callback.
        if not self.owns(event.task.key):
            await self._announce("callback", event.task.key)

    async def _received(self, change: Change) -> None:
        if change.task is None:
            self._enqueue(self._resync)
            return
        key, kind = change.task, change.kind
        self._enqueue(lambda: self._follow(key, kind))

    async def _follow(self, key: TaskKey, kind: ChangeKind) -> None:
        """Another replica changed the task: take the stored record; its owner acts on it."""
        try:
            old, new = await self._tracker.reload(key)
        except StoreError as exc:
            log.warning("cluster_change_reload_failed", kind=kind, error=str(exc))
            return
        if new is None:
            self._poll.unfollow([key])
            return
        if not self.owns(key):
            return
        if new.final:
            self._poll.unfollow([key])
        elif old is None or old.status is Status.REMOVED:
            self._poll.follow(new, 0.0)  # a new task is polled at once
        elif kind == "callback" and old.status is not new.status:
            self._poll.follow(new, 0.0)  # confirm the callback's news by polling
        elif key not in self._poll.scheduler:
            self._poll.follow(new, 0.0)
        else:
            self._poll.scheduler.update_interval(key, self._intervals.of(new))
        transition = None
        if old is not None and old.status is not new.status:
            try:
                latest = await self._tracker.transitions(key, limit=1)
            except StoreError:
                latest = []
            if latest and latest[0].to_status is new.status:
                transition = latest[0]
        await self._alerts.evaluate_task(new, transition)

    async def _feed_back(self) -> None:
        self._enqueue(self._resync)

    async def _resync(self) -> None:
        """Compare the table with the store; follow every difference."""
        try:
            stored = {task.key: task for task in await self._store.load_tasks()}
        except StoreError as exc:
            log.warning("cluster_resync_failed", error=str(exc))
            return
        held = {task.key: task for task in self._registry.tasks()}
        changed = [key for key, task in stored.items() if held.get(key) != task]
        changed.extend(key for key in held if key not in stored)
        for key in changed:
            await self._follow(key, "resync")
        # Owned live tasks the scheduler lost track of (a takeover interrupted by an outage).
        missing = [
            task.key
            for task in self._registry.tasks()
            if not task.final and self.owns(task.key) and task.key not in self._poll.scheduler
        ]
        if missing:
            await self._take(missing)
        if not self._settled:
            await self._settle(self._generation)
        if changed or missing:
            log.info("cluster_resynced", changed=len(changed), rescheduled=len(missing))

    # --- background --------------------------------------------------------------------------

    def _enqueue(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._work.put_nowait(work)

    async def _worker(self) -> None:
        """One piece of cluster work at a time, in the order it came."""
        while True:
            work = await self._work.get()
            try:
                await work()
            except Exception:
                log.exception("cluster_work_failed")

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self._probe_every)
            up = await self._store.ping()
            if up != self._store_up:
                log.warning("store_up" if up else "store_down", store=self._store.name)
                self._store_up = up
                if up:
                    self._enqueue(self._resync)
            self._gauges()

    async def _periodic_resync(self) -> None:
        while True:
            await asyncio.sleep(self._resync_every)
            if self._store_up:
                self._enqueue(self._resync)

    async def _follow_fleet_alerts(self) -> None:
        while True:
            try:
                records = await self._store.load_alerts()
            except StoreError:
                pass  # keep the last known; the probe reports the store down
            else:
                self._fleet_alerts = [r for r in records if r.state == "firing"]
            await asyncio.sleep(FLEET_ALERTS_SECONDS)

    def _gauges(self) -> None:
        self._metrics.store_up.set(1 if self._store_up else 0)
        owned = owned_by_account(self._registry.tasks(), self.owns)
        self._metrics.set_cluster(len(self.coordinator.members), owned, self._accounts())


def redis_store_of(store: Store) -> RedisStore:
    """The store a cluster shares (the daemon composes a Replica only with Redis)."""
    if not isinstance(store, RedisStore):
        raise TypeError("replicas share a Redis store")
    return store
