"""This replica's share of the work, as the live member set determines it. Pure.

What the scheduler, the alert engine and the metrics collector ask: do I own this task, do I
send the monitor-level alerts and the fleet series, and what did the last membership change
give me and take away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from monitor.cluster.hashing import MONITOR_KEY, handover, owner
from monitor.models import TaskKey

__all__ = ["Ownership", "OwnershipChange", "hash_key"]


@dataclass(frozen=True, slots=True)
class OwnershipChange:
    """Tasks to start polling and tasks to stop polling after a membership change."""

    gained: tuple[TaskKey, ...]
    lost: tuple[TaskKey, ...]
    # Tasks whose owner left, whoever owns them now (:class:`~monitor.cluster.hashing.Handover`).
    orphaned: tuple[TaskKey, ...] = ()


def hash_key(key: TaskKey) -> str:
    """The string a task is hashed by: ``{sdk_app_id}/{task_id}``, the same in every replica."""
    return f"{key.sdk_app_id}/{key.task_id}"


class Ownership:
    """The members this replica sees, and what it owns among them.

    With no members (alone without Redis, or cut off from it) it owns nothing; a single
    replica on SQLite uses :meth:`alone`, which owns everything.
    """

    __slots__ = ("_members", "me")

    def __init__(self, me: str, members: Iterable[str] = ()) -> None:
        self.me = me
        self._members = tuple(sorted(set(members)))

    @classmethod
    def alone(cls, me: str) -> Ownership:
        return cls(me, (me,))

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    def owner_of(self, key: TaskKey) -> str | None:
        return owner(hash_key(key), self._members)

    def owns(self, key: TaskKey) -> bool:
        return self.me in self._members and self.owner_of(key) == self.me

    @property
    def leads(self) -> bool:
        """Whether this replica sends monitor-level alerts and exports the fleet series."""
        return self.me in self._members and owner(MONITOR_KEY, self._members) == self.me

    def update(self, members: Iterable[str], keys: Iterable[TaskKey]) -> OwnershipChange:
        """Move to a new member set; the keys among ``keys`` this replica gains and loses."""
        after = tuple(sorted(set(members)))
        by_name = {hash_key(k): k for k in keys}
        # A replica absent from a member set owns nothing in it, whatever the hash says.
        before_set = self._members if self.me in self._members else ()
        after_set = after if self.me in after else ()
        change = handover(self.me, by_name, before_set, after_set)
        self._members = after
        return OwnershipChange(
            tuple(by_name[k] for k in change.gained),
            tuple(by_name[k] for k in change.lost),
            tuple(by_name[k] for k in change.orphaned),
        )
