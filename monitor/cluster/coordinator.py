"""One replica's part in the cluster: membership, ownership and the change feed together.

It tells the daemon, through callbacks, what to poll and what to stop polling:

* ``on_gained([(key, due_in), ...])`` after a membership change, the tasks this replica now
  owns, most overdue first, each with the seconds until it is due (0 when overdue) computed
  from its last observation in the shared store, so a takeover resumes each task's rhythm
  instead of polling everything at once;
* ``on_orphans({account: count})``, before ``on_gained``: how many live tasks of each account
  lost their owner in this change (a replica died or left), whichever survivor owns them now.
  Over budget they go ahead of every survivor's backlog, so a survivor that has none of them
  left to poll holds its requests back for the others (docs/high-availability.md);
* ``on_lost([key, ...])``: tasks another replica owns now; stop polling them. When this
  replica loses Redis for ``member_timeout`` it owns nothing, so it stops polling everything,
  as docs/high-availability.md asks;
* ``on_change(change)``: a change another replica announced (a registration, a removal, a
  callback, a transition): every replica reloads that task from the store, so each answers the
  API alike, and the owner (``owns(key)``) acts on it, e.g. polls a new task at once;
* ``on_members(live)``: after every membership change, once the above are called;
* ``on_resync()``: the feed was cut and is back: messages may have been lost, so reload the
  tasks this replica owns from the store.

The daemon owns the task table; the coordinator reads it through ``tasks()`` when membership
changes and never writes it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as aredis

from monitor.cluster.feed import Change, ChangeFeed, ChangeKind
from monitor.cluster.hashing import takeover_order
from monitor.cluster.membership import Membership, default_replica_id
from monitor.cluster.ownership import Ownership, hash_key
from monitor.config import ClusterConfig
from monitor.log import get_logger
from monitor.models import Task, TaskKey
from monitor.store.redis.connection import RedisKeys

__all__ = ["ClusterCoordinator", "last_observed", "replica_id_of"]

log = get_logger(__name__)


def replica_id_of(config: ClusterConfig) -> str:
    """The configured replica id, else the host name plus the process id."""
    return config.replica_id or default_replica_id()


def last_observed(task: Task) -> float | None:
    """When the task was last observed by a poll (answered or failed); None if never."""
    seen = [t for t in (task.last_success_at, task.last_error_at) if t is not None]
    return max(seen) if seen else None


async def _nothing() -> None:
    return None


class ClusterCoordinator:
    """See the module docstring. ``clock`` is wall time, the clock observations are kept in."""

    def __init__(
        self,
        client: aredis.Redis,
        keys: RedisKeys,
        config: ClusterConfig,
        *,
        tasks: Callable[[], Iterable[Task]],
        interval_of: Callable[[Task], float],
        on_gained: Callable[[list[tuple[TaskKey, float]]], None],
        on_lost: Callable[[list[TaskKey]], None],
        on_change: Callable[[Change], Awaitable[None]],
        on_resync: Callable[[], Awaitable[None]] = _nothing,
        on_members: Callable[[tuple[str, ...]], None] | None = None,
        on_orphans: Callable[[dict[str, int]], None] | None = None,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
        retry: float = 1.0,
    ) -> None:
        self.replica_id = replica_id or replica_id_of(config)
        self._tasks = tasks
        self._interval_of = interval_of
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._on_change = on_change
        self._on_resync = on_resync
        self._on_members = on_members
        self._on_orphans = on_orphans
        self._clock = clock
        self.ownership = Ownership(self.replica_id)
        self.membership = Membership(
            client,
            keys.members,
            self.replica_id,
            heartbeat=config.heartbeat,
            member_timeout=config.member_timeout,
            on_change=self._members_changed,
        )
        self.feed = ChangeFeed(
            client,
            keys.changes,
            self.replica_id,
            self._received,
            on_reconnect=self._resync,
            retry=retry,
        )

    # --- what the daemon asks ------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        return self.ownership.members

    def owns(self, key: TaskKey) -> bool:
        return self.ownership.owns(key)

    @property
    def leads(self) -> bool:
        """Sends monitor-level alerts and exports the fleet series."""
        return self.ownership.leads

    def owned(self) -> list[TaskKey]:
        """The live tasks this replica polls (``trtc_monitor_owned_tasks``)."""
        return [
            task.key for task in self._tasks() if not task.final and self.ownership.owns(task.key)
        ]

    async def announce(self, kind: ChangeKind, key: TaskKey | None = None) -> None:
        """Tell the other replicas, after the change is in the store (order of effects)."""
        await self.feed.publish(kind, key)

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen first, then join: no announcement made after joining can be missed."""
        await self.feed.start()
        await self.membership.start()

    async def stop(self, *, leave: bool = True) -> None:
        await self.membership.stop(leave=leave)
        await self.feed.stop()

    # --- reactions -----------------------------------------------------------------------------

    def _members_changed(self, before: tuple[str, ...], after: tuple[str, ...]) -> None:
        tasks = {task.key: task for task in self._tasks() if not task.final}
        change = self.ownership.update(after, tasks)
        if change.lost:
            self._on_lost(list(change.lost))
        if change.orphaned and self._on_orphans is not None:
            self._on_orphans(dict(Counter(tasks[key].account for key in change.orphaned)))
        if change.gained:
            now = self._clock()
            names = {hash_key(key): key for key in change.gained}
            order = takeover_order(
                names,
                {name: last_observed(tasks[key]) for name, key in names.items()},
                {name: self._interval_of(tasks[key]) for name, key in names.items()},
                now,
            )
            self._on_gained([(names[name], max(0.0, due - now)) for name, due in order])
        if self._on_members is not None:
            # Whatever moved (tasks, leadership): e.g. the alert state is handed over.
            self._on_members(after)
        log.info(
            "cluster_ownership_changed",
            replica=self.replica_id,
            replicas=len(after),
            gained=len(change.gained),
            lost=len(change.lost),
            leads=self.ownership.leads,
        )

    async def _received(self, change: Change) -> None:
        await self._on_change(change)

    async def _resync(self) -> None:
        await self._on_resync()
