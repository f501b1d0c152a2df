"""What the HTTP layer writes through: the tracker, guarded as this replica's share requires.

One :class:`GuardedWriter` with the guard the share needs:

* :class:`StoreGuard` (alone): while the store takes no writes, every mutating call is refused
  before anything is computed;
* :class:`OwnerGuard` (among replicas): a task this replica does not own is reloaded from
  the store before a change is computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

from monitor.callbacks.effects import CallbackTarget
from monitor.http.ports import TaskWriter
from monitor.models import Source, Task, TaskKey, Transition
from monitor.store.base import StoreError, StoreHealth
from monitor.taskspec import TaskSpec, TaskUpdate
from monitor.tracker import Tracker
from monitor.uploads import UploadChange, UploadEvent

__all__ = ["Gate", "Guard", "GuardedWriter", "OwnerGuard", "StoreGuard", "WriterOf"]


class WriterOf(TaskWriter, CallbackTarget, Protocol):
    """What the HTTP layer writes through: the task API and callbacks (the tracker's calls)."""


class Gate(Protocol):
    """Whether the store takes writes, and a way to have it probed at once."""

    @property
    def store_up(self) -> bool: ...

    @property
    def store_health(self) -> StoreHealth: ...

    def kick(self) -> None: ...


class StoreGuard:
    """Alone: while the store takes no writes, every mutating call is refused with StoreError
    (503) before anything is computed, even one that would write nothing; a call whose write
    fails has the store probed at once."""

    __slots__ = ("_solo",)

    def __init__(self, solo: Gate) -> None:
        self._solo = solo

    async def before(self, keys: Iterable[TaskKey]) -> None:
        if not self._solo.store_up:
            reason = self._solo.store_health.reason or "the store is not open"
            raise StoreError(reason)

    def failed(self) -> None:
        self._solo.kick()


class OwnerGuard:
    """Among replicas: a task this replica does not own (or does not know) is reloaded from
    the store before a change is computed, since its owner may have changed it since this
    replica last heard."""

    __slots__ = ("_owns", "_tracker")

    def __init__(self, tracker: Tracker, owns: Callable[[TaskKey], bool]) -> None:
        self._tracker = tracker
        self._owns = owns

    async def before(self, keys: Iterable[TaskKey]) -> None:
        for key in keys:
            if not self._owns(key) or self._tracker.get(key) is None:
                await self._tracker.reload(key)

    def failed(self) -> None:
        pass


class Guard(Protocol):
    """What a writer does before a mutating call about ``keys``, and after its write failed."""

    async def before(self, keys: Iterable[TaskKey]) -> None: ...

    def failed(self) -> None: ...


class GuardedWriter:
    """The tracker for the HTTP layer, every mutating call behind the share's :class:`Guard`
    (:class:`StoreGuard` alone, :class:`OwnerGuard` among replicas)."""

    __slots__ = ("_guard", "_tracker")

    def __init__(self, tracker: Tracker, guard: Guard) -> None:
        self._tracker = tracker
        self._guard = guard

    @contextlib.asynccontextmanager
    async def _guarded(self, *keys: TaskKey) -> AsyncIterator[None]:
        await self._guard.before(keys)
        try:
            yield
        except StoreError:
            self._guard.failed()
            raise

    def get(self, key: TaskKey) -> Task | None:
        return self._tracker.get(key)

    async def transitions(self, key: TaskKey, limit: int | None = None) -> list[Transition]:
        return await self._tracker.transitions(key, limit)

    async def register(self, spec: TaskSpec, source: Source) -> tuple[Task, bool]:
        async with self._guarded(spec.key):
            return await self._tracker.register(spec, source)

    async def register_many(self, specs: list[TaskSpec], source: Source) -> list[tuple[Task, bool]]:
        async with self._guarded(*{spec.key: None for spec in specs}):
            return await self._tracker.register_many(specs, source)

    async def remove(self, key: TaskKey) -> Task | None:
        async with self._guarded(key):
            return await self._tracker.remove(key)

    async def update_task(self, key: TaskKey, update: TaskUpdate) -> Task | None:
        async with self._guarded(key):
            return await self._tracker.update_task(key, update)

    async def observe_exit(
        self, key: TaskKey, leave_code: int | None, detail: dict[str, Any], at: float
    ) -> Transition | None:
        async with self._guarded(key):
            return await self._tracker.observe_exit(key, leave_code, detail, at)

    async def note_facts(self, key: TaskKey, facts: dict[str, Any]) -> bool:
        async with self._guarded(key):
            return await self._tracker.note_facts(key, facts)

    async def observe_upload(self, key: TaskKey, event: UploadEvent) -> UploadChange | None:
        async with self._guarded(key):
            return await self._tracker.observe_upload(key, event)
