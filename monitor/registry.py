"""The task table: the one in-memory copy of every registered task, and its queries.

Only the tracker changes the table, and only after the store has the change (docs/polling.md);
everything else reads it. A record in the table is replaced, never
changed in place, so a reader holding one (a metrics snapshot, an alert evaluation) sees a
consistent task.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from monitor.models import Status, Task, TaskKey

__all__ = ["TaskFilter", "TaskRegistry"]


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: Status | None = None
    region: str | None = None
    account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, task: Task) -> bool:
        if self.status is not None and task.status is not self.status:
            return False
        if self.region is not None and task.region != self.region:
            return False
        if self.account is not None and task.account != self.account:
            return False
        return all(task.labels.get(k) == v for k, v in self.labels.items())


class TaskRegistry:
    """Registered tasks by key."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._tasks: dict[TaskKey, Task] = {t.key: t for t in tasks}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def get(self, key: TaskKey) -> Task | None:
        return self._tasks.get(key)

    def tasks(self) -> list[Task]:
        """A snapshot of every task, in no particular order."""
        return list(self._tasks.values())

    def find(self, flt: TaskFilter) -> list[Task]:
        """The tasks that match, in key order."""
        return sorted((t for t in self._tasks.values() if flt.matches(t)), key=lambda t: t.key)

    def counts(self) -> Counter[tuple[str, str, Status]]:
        """Tasks by (account, region, status)."""
        return Counter((t.account, t.region, t.status) for t in self._tasks.values())

    # -- changes: the tracker's, after the store has them ---------------------------------

    def put(self, task: Task) -> None:
        self._tasks[task.key] = task

    def put_many(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            self._tasks[task.key] = task

    def drop(self, key: TaskKey) -> None:
        self._tasks.pop(key, None)
