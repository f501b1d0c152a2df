"""The tracker: every change to a task goes through here, in one order (docs/polling.md).

For each observation (a poll answer, a callback, an API call):

1. **compute** the task's new record with the pure rules of :mod:`monitor.status_rules`, on a copy;
2. **persist** it (and the transition, if the status changed) through the store;
3. **apply** it: the copy replaces the record in the registry's table;
4. **announce** it on the event bus: metrics, the log, alerting and scheduling react.

If the store write raises, nothing after it happens: memory still equals the store, nothing
is announced, no alert is sent, and the caller retries (a poll at its next due time) or answers
with an error (an API call or a callback gets a 503; TRTC re-delivers callbacks).

Changes to one task are serialised by a lock per task, so a callback and a poll answer arriving
together cannot both start from the same old record. An answer to a poll sent before the
newest recorded observation of the task (a callback, a poll sent later) carries older news and
never overrides it.

Which observation is newer is decided on the monotonic clock (:meth:`Tracker.tick`), never on
the wall clock: a step of the wall clock (an NTP correction, an operator's ``date -s``) must
neither make every answer look older than the last one, nor an old answer look newer. A
callback is stamped when it is recorded here (its own times come from TRTC's clock, and are
kept for people); an answer to a poll that was in flight meanwhile is dropped, and the poll
that confirms the callback follows at once. With several replicas, a record another replica
changed counts as observed when this replica takes it from the store (:meth:`Tracker.reload`):
a poll of this replica in flight across that change is older. Wall-clock stamps
(``observed_at``, transitions, health) are for people.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import structlog

from monitor.events import (
    EventBus,
    HealthChanged,
    TaskObserved,
    TasksPurged,
    TasksRegistered,
    TaskUpdated,
    TransitionRecorded,
    UploadChanged,
)
from monitor.models import (
    ERROR_OUTCOMES,
    Outcome,
    Source,
    Status,
    Task,
    TaskKey,
    Transition,
    monotonic_beside,
    with_monotonic_stamps,
)
from monitor.registry import TaskRegistry
from monitor.status_rules import HealthChange, apply_callback_exit, apply_poll, apply_removal
from monitor.store.base import Store
from monitor.taskspec import TaskSpec, TaskUpdate
from monitor.trtc.client import CallResult
from monitor.uploads import UploadChange, UploadEvent, UploadPhase, apply_upload_event, note_stopped

__all__ = ["PendingRegistrations", "PollApplied", "Tracker"]

log = structlog.get_logger("monitor.tracker")

_STOPPED = frozenset({Status.EXITED, Status.ENDED, Status.EXPIRED})
_UPLOADING = UploadPhase.UPLOADING


@dataclass(frozen=True, slots=True)
class PollApplied:
    """What one poll answer did: the task as it now is, and the transition, if any."""

    task: Task | None
    transition: Transition | None = None
    # The answer was older than what is already known of the task and was not applied.
    outdated: bool = False


@dataclass(frozen=True, slots=True)
class PendingRegistrations:
    """Registrations stored but not yet applied (see :meth:`Tracker.store_registrations`)."""

    answers: list[tuple[Task, bool]]
    tasks: list[Task]


class _KeyedLocks:
    """One asyncio.Lock per key while anyone holds or waits for it; none otherwise."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[TaskKey, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: TaskKey) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Tracker:
    """Applies observations to the task table with the order of effects (module docstring)."""

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        bus: EventBus,
        *,
        resource_expired_hours: Callable[[], float] = lambda: 72.0,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` is the wall clock (stamps for people), ``mono`` the monotonic one (order
        and ages); without ``mono``, ``time.monotonic`` beside the real wall clock, else the
        given ``clock`` serves as both (a test's manual clock is all the time there is)."""
        self._store = store
        self._registry = registry
        self._bus = bus
        self._expired_hours = resource_expired_hours
        self._clock = clock
        self._mono = monotonic_beside(clock) if mono is None else mono
        self._locks = _KeyedLocks()

    def tick(self) -> float:
        """Now, on the clock that orders observations: a poll takes it as it is sent."""
        return self._mono()

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: TaskKey) -> Task | None:
        return self._registry.get(key)

    async def transitions(self, key: TaskKey, limit: int | None = None) -> list[Transition]:
        return await self._store.transitions(key, limit=limit)

    # -- registrations ----------------------------------------------------------------------

    async def register(self, spec: TaskSpec, source: Source = Source.API) -> tuple[Task, bool]:
        """Register a task; registering it again is a no-op answering the existing task.
        A removed task registered again starts a new life."""
        async with self._locks.hold(spec.key):
            existing = self._registry.get(spec.key)
            if existing is not None and existing.status is not Status.REMOVED:
                return existing, False
            task = self._new_task(spec, source, self._clock(), self._mono())
            await self._store.save_task(task)
            self._registry.put(task)
        await self._announce_registered([task])
        return task, True

    async def register_many(
        self, specs: Sequence[TaskSpec], source: Source = Source.API
    ) -> list[tuple[Task, bool]]:
        """Register many tasks in one store transaction; answers in the order of ``specs``.

        Specs already registered (or repeated within ``specs``) answer the existing task.
        """
        pending = await self.store_registrations(specs, source)
        await self.apply_registrations(pending)
        return pending.answers

    async def store_registrations(
        self, specs: Sequence[TaskSpec], source: Source = Source.API
    ) -> PendingRegistrations:
        """The first half of :meth:`register_many`: new tasks stored, not yet applied.

        A reload stores the file's tasks before it swaps the configuration, and applies them
        after, once their accounts exist.
        """
        now, mono = self._clock(), self._mono()
        answers: list[tuple[Task, bool]] = []
        new: dict[TaskKey, Task] = {}
        # Tasks registered together with the same labels share one dict, as the store's
        # records do (a record's labels are replaced, never changed in place).
        label_sets: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        for spec in specs:
            key = spec.key
            known = new.get(key) or self._registry.get(key)
            if known is not None and known.status is not Status.REMOVED:
                answers.append((known, False))
                continue
            items = frozenset(spec.labels.items())
            labels = label_sets.get(items)
            if labels is None:
                labels = label_sets[items] = dict(spec.labels)
            task = self._new_task(spec, source, now, mono, key=key, labels=labels)
            new[key] = task
            answers.append((task, True))
        if new:
            await self._store.save_tasks(list(new.values()))
        return PendingRegistrations(answers, list(new.values()))

    async def apply_registrations(self, pending: PendingRegistrations) -> None:
        """The second half of :meth:`register_many`: apply and announce what was stored."""
        applied = []
        for task in pending.tasks:
            # Another registration of the key may have been applied meanwhile: the first one
            # applied wins, as it would have with one lock per key.
            current = self._registry.get(task.key)
            if current is None or current.status is Status.REMOVED:
                self._registry.put(task)
                applied.append(task)
        await self._announce_registered(applied)

    @staticmethod
    def _new_task(
        spec: TaskSpec,
        source: Source,
        now: float,
        mono: float,
        *,
        key: TaskKey | None = None,
        labels: dict[str, str] | None = None,
    ) -> Task:
        return Task(
            sdk_app_id=spec.sdk_app_id,
            task_id=spec.task_id,
            # Shared strings: a fleet has few regions and accounts, and 100,000 tasks.
            region=sys.intern(spec.region),
            account=sys.intern(spec.account),
            labels=dict(spec.labels) if labels is None else labels,
            _key=key,
            interval=spec.interval,
            recorder_key=spec.recorder_key,
            kind=spec.kind,
            registered_at=now,
            source=source,
            status=Status.PENDING,
            status_since=now,
            polled_mono=mono,
            since_mono=mono,
        )

    async def _announce_registered(self, tasks: Sequence[Task]) -> None:
        # One announcement per batch: per-task subscribers still hear each task (events.py).
        if tasks:
            await self._bus.publish(TasksRegistered(tuple(tasks)))

    async def remove(self, key: TaskKey) -> Task | None:
        """Deregister: an expected stop, recorded as a transition to ``Removed``."""
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None:
                return None
            new = task.copy()
            transition = apply_removal(new, self._clock())
            if transition is None:
                return task
            new.since_mono = self._mono()
            stored = await self._store.record_transition(new, transition)
            self._registry.put(new)
        await self._bus.publish(TransitionRecorded(new, stored))
        return new

    async def update_task(self, key: TaskKey, update: TaskUpdate) -> Task | None:
        """Change a task's labels and/or interval (those ``update`` sets): stored, then
        applied, then announced as :class:`TaskUpdated`. None for an unknown task; a removed
        task is answered unchanged (the caller refuses it). Nothing changes if the store
        write fails (StoreError)."""
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None or task.status is Status.REMOVED:
                return task
            new = task.copy()
            fields = update.model_fields_set
            if "labels" in fields and update.labels is not None:
                new.labels = dict(update.labels)
            if "interval" in fields:
                new.interval = update.interval
            fields_changed = ("labels", "interval")
            changed = tuple(f for f in fields_changed if getattr(new, f) != getattr(task, f))
            if not changed:
                return task
            await self._store.save_task(new)
            self._registry.put(new)
        await self._bus.publish(TaskUpdated(new, changed))
        return new

    # -- observations -----------------------------------------------------------------------

    async def observe_poll(
        self, key: TaskKey, result: CallResult, sent_at: float, sent_tick: float | None = None
    ) -> PollApplied:
        """One DescribeCloudRecording answer to a request sent at ``sent_at`` (wall clock, for
        people) and ``sent_tick`` (:meth:`tick` as it was sent, which decides whether the answer
        is news; None: sent just now)."""
        if sent_tick is None:
            sent_tick = self._mono()
        if result.outcome is Outcome.THROTTLED:
            # The monitor's own budget problem: nothing about the task was learnt.
            return PollApplied(self._registry.get(key))
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None or task.final:
                return PollApplied(task)  # removed or ended while the request was in flight
            says_status = result.outcome not in ERROR_OUTCOMES
            if says_status and sent_tick < task.seen_mono:
                log.info(
                    "poll_answer_outdated",
                    sdk_app_id=task.sdk_app_id,
                    task_id=task.task_id,
                    sent_at=sent_at,
                    newest_observation=task.observed_at,
                    older_by=round(task.seen_mono - sent_tick, 3),
                )
                return PollApplied(task, outdated=True)
            new = task.copy()
            now = self._clock()
            if new.since_mono is None:
                # Read from the store at start-up: first in this process's hands.
                with_monotonic_stamps(new, now, self._mono())
            effect = apply_poll(new, result, now, self._expired_hours())
            # Ages count from the send, a round trip early: one stamp object for all three.
            if says_status:
                new.polled_mono = sent_tick
            t = effect.transition
            if t is not None:
                new.since_mono = sent_tick
            if t is not None and t.to_status in _STOPPED and new.upload.state is _UPLOADING:
                # A poll saw the stop (no 302 came): RecordingUploadOverdue counts from here,
                # not from a later Exited -> Ended.
                new.upload = note_stopped(new.upload, t.at)
                self._stopped(task, new)
            if says_status:
                new.seen_mono = sent_tick
                new.observed_at = sent_at
            stored = None
            if effect.transition is not None:
                stored = await self._store.record_transition(new, effect.transition)
            else:
                await self._store.save_health([new])
            self._registry.put(new)
        if effect.health is not None:
            await self._bus.publish(
                HealthChanged(
                    new,
                    failing=effect.health is HealthChange.FAILING,
                    code=result.code or None,
                    message=result.message or None,
                    request_id=result.request_id,
                    outcome=result.outcome.value,
                )
            )
        if stored is not None:
            await self._bus.publish(TransitionRecorded(new, stored))
        else:
            await self._bus.publish(TaskObserved(new))
        return PollApplied(new, stored)

    async def observe_exit(
        self, key: TaskKey, leave_code: int | None, detail: dict[str, Any], at: float
    ) -> Transition | None:
        """A 302 callback: the recorder stopped at ``at`` (its event time, by TRTC's clock: kept
        for people). It counts as observed now, on the monotonic clock: newer than any poll
        already in flight."""
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None:
                return None
            mono = self._mono()
            new = replace(task, observed_at=at, seen_mono=max(task.seen_mono, mono))
            if leave_code is not None:
                # Kept on the task (and stored with it) for the alert rules.
                new.extra = {**task.extra, "leave_code": leave_code}
            transition = apply_callback_exit(new, self._clock(), leave_code, detail)
            if transition is not None:
                new.since_mono = mono
            stored = None
            if transition is None:
                # Already Exited by a poll: the leave code must still be kept, and may turn
                # the exit into an expected one.
                await self._store.save_task(new)
            else:
                stored = await self._store.record_transition(new, transition)
            self._registry.put(new)
        if stored is None:
            await self._bus.publish(TaskObserved(new))
        else:
            await self._bus.publish(TransitionRecorded(new, stored))
        return stored

    async def note_facts(self, key: TaskKey, facts: dict[str, Any]) -> bool:
        """Facts learnt from callbacks (files, VOD ids), kept on the task for the API."""
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None:
                return False
            new = replace(task, extra={**task.extra, **facts})
            await self._store.save_task(new)
            self._registry.put(new)
        await self._bus.publish(TaskObserved(new))
        return True

    async def observe_upload(self, key: TaskKey, event: UploadEvent) -> UploadChange | None:
        """An upload callback (301-312): the task's upload state after it (docs/callbacks.md).

        None for an unknown task. A repeat, or a late event that adds nothing, stores and
        announces nothing.
        """
        async with self._locks.hold(key):
            task = self._registry.get(key)
            if task is None:
                return None
            change = apply_upload_event(task.upload, event, self._clock())
            if not change.changed:
                return change
            new = replace(task, upload=change.state)
            self._stopped(task, new)
            await self._store.save_task(new)
            self._registry.put(new)
        await self._bus.publish(UploadChanged(new, change, event.event_type))
        return change

    async def reload(self, key: TaskKey) -> tuple[Task | None, Task | None]:
        """Take the task as the store has it now: another replica changed it
        (docs/high-availability.md). Answers the record held before and the one held now;
        announces nothing, since
        the replica that made the change has announced it.

        The other replica's observation is learnt now: an answer to a poll this replica sent
        before it is older (module docstring), whatever the two replicas' wall clocks say."""
        async with self._locks.hold(key):
            old = self._registry.get(key)
            new = await self._store.load_task(key)
            if new is None:
                self._registry.drop(key)
            else:
                self._registry.put(self._taken(old, new))
        return old, new

    def _stopped(self, old: Task, new: Task) -> None:
        """The upload deadline's start on the monotonic clock, when the stop time changed: when
        the stop was learnt (a poll's answer, a 302's arrival), or the stop already known if
        that was earlier. A 302's own time is TRTC's clock: turning it into an age would take
        this host's wall clock, which may just have been set."""
        at = new.upload.stopped_at
        if at is None:
            new.stopped_mono = None
        elif at != old.upload.stopped_at:
            now, known = self._mono(), old.stopped_mono
            new.stopped_mono = now if known is None else min(known, now)

    def _taken(self, old: Task | None, new: Task) -> Task:
        """A record read from the store, with this process's monotonic stamps: kept from the
        record held where its wall-clock stamp is unchanged, else converted as of now."""
        mono = self._mono()
        with_monotonic_stamps(new, self._clock(), mono)
        if old is None:
            new.seen_mono = mono
            return new
        same_polled = (old.last_success_at, old.registered_at) == (
            new.last_success_at,
            new.registered_at,
        )
        if same_polled and old.polled_mono is not None:
            new.polled_mono = old.polled_mono
        if old.status_since == new.status_since and old.since_mono is not None:
            new.since_mono = old.since_mono
        if old.upload.stopped_at == new.upload.stopped_at:
            new.stopped_mono = old.stopped_mono
        if old.status is new.status and old.observed_at == new.observed_at:
            new.seen_mono = old.seen_mono  # nothing observed of the status meanwhile
        else:
            new.seen_mono = mono
        return new

    async def purge(self, before: float) -> list[TaskKey]:
        """Forget tasks that ended before ``before``, with their history and alert records."""
        purged = await self._store.purge(before)
        for key in purged:
            self._registry.drop(key)
        if purged:
            log.info("tasks_purged", count=len(purged))
            await self._bus.publish(TasksPurged(purged))
        return purged
