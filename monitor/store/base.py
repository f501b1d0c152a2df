"""The store's contract: what any backend (SQLite now, Redis later) keeps and how it is asked.

A backend holds tasks (identity, status and health), their transitions and the alert state, so
a restart restores everything and does not re-send alerts already sent (docs/polling.md and
docs/alerts.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, Self

from monitor.models import Task, TaskKey, Transition

AlertState = Literal["firing", "resolved"]


class StoreError(Exception):
    """The store cannot be opened or used: the message says which store and why."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store takes writes now, and if not, why (for the log and operators).

    ``restart`` is set when the store cannot come back by itself: its file was removed or
    replaced under the running daemon, and only a restart (after the operator put the right
    file in place) opens it again.
    """

    up: bool
    reason: str = ""
    restart: bool = False


@dataclass(slots=True)
class AlertRecord:
    """What the alert engine must remember across a restart about one alert.

    ``last_sent_at`` and ``resolved_sent`` are per receiver, because one receiver may be down
    while another delivered: each must get the resolved notice exactly once, and resends of a
    firing alert are paced per receiver.
    """

    fingerprint: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    starts_at: float
    ends_at: float | None = None
    # The task the alert is about, if any: deleting or purging the task deletes the record.
    task: TaskKey | None = None
    last_sent_at: dict[str, float] = field(default_factory=dict)  # receiver name -> time
    resolved_sent: set[str] = field(default_factory=set)  # receivers that got the resolve


class OpenedByWith:
    """``async with store:`` opens the store and closes it at the end."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Store(Protocol):
    """Durable state of the daemon. Every write is durable when its coroutine returns.

    Calls are applied in the order they were made. Mutable arguments (tasks, alert records) are
    copied when the call is made (a large batch in chunks, while it waits its turn), so callers
    may keep changing them afterwards.
    """

    async def open(self) -> None:
        """Connect, create or upgrade the schema; raises StoreError when that is impossible."""
        ...

    async def close(self) -> None:
        """Flush and release everything; later calls raise StoreError. Closing twice is fine."""
        ...

    async def probe(self) -> StoreHealth:
        """Check now whether the store can take writes; never raises.

        While it cannot, writes raise StoreError and change nothing; a store that can recover
        by itself (Redis answers again, disk space was freed) is up again after a probe that
        finds it so.
        """
        ...

    async def load_tasks(self) -> list[Task]:
        """Every stored task with its status and health, in key order."""
        ...

    async def load_task(self, key: TaskKey) -> Task | None:
        """One task as stored now, or None: what another replica changed
        (docs/high-availability.md)."""
        ...

    async def save_task(self, task: Task) -> None:
        """Insert the task or replace every field of the stored one."""
        ...

    async def save_tasks(self, tasks: Sequence[Task]) -> None:
        """``save_task`` for many tasks, in one transaction."""
        ...

    async def save_health(self, tasks: Sequence[Task]) -> None:
        """Write only the health fields of tasks already stored (unknown tasks are skipped).

        Health changes on every poll; the tracker writes it before it applies a poll's answer.
        Health fields: consecutive_errors, last_error_code, last_error_at, last_success_at,
        last_request_id, storage_files, last_response, observed_at.
        """
        ...

    async def record_transition(self, task: Task, transition: Transition) -> Transition:
        """Write the transition and the task's new state atomically; return it with ``seq`` set.

        ``task`` must already carry the new status (``task.status == transition.to_status``).
        Alerts about the transition may be sent once this returns, never before.
        """
        ...

    async def transitions(
        self, key: TaskKey, limit: int | None = None, newest_first: bool = True
    ) -> list[Transition]:
        """One task's transitions ordered by ``seq``; ``limit`` keeps the first ``limit``."""
        ...

    async def recent_transitions(self, limit: int) -> list[Transition]:
        """The newest transitions of the whole fleet, newest first."""
        ...

    async def delete_task(self, key: TaskKey) -> None:
        """Forget the task, its transitions and its alert records (nothing if unknown)."""
        ...

    async def purge(self, before: float) -> list[TaskKey]:
        """Delete tasks in a final status that ended before ``before``, with their transitions
        and alert records; return their keys so their metric series can go too."""
        ...

    async def save_alert(self, record: AlertRecord) -> None:
        """Insert or replace the alert record with this fingerprint."""
        ...

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        """``save_alert`` for many records, in one transaction."""
        ...

    async def load_alerts(self) -> list[AlertRecord]:
        """Every stored alert record, in fingerprint order."""
        ...

    async def delete_alert(self, fingerprint: str) -> None:
        """Forget one alert record (nothing if unknown)."""
        ...

    async def meta_get(self, key: str) -> str | None:
        """A small value the daemon keeps about itself, or None."""
        ...

    async def meta_set(self, key: str, value: str) -> None:
        """Set a small value the daemon keeps about itself."""
        ...
