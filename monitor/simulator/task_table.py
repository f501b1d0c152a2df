"""The simulated recording tasks and the callbacks their lives produce.

The table is the simulator's state: every task ever added, keyed by (SdkAppId, TaskId), and a
heap of the times at which a task next has a callback due. The API actions
(:mod:`monitor.simulator.actions`) and the control surface change it; the server only routes to
it. Times are seconds of the simulator's clock.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from monitor.models import Status
from monitor.simulator.callbacks import CallbackSender, CallbackSettings, build_body
from monitor.simulator.clock import Clock
from monitor.simulator.lifecycle import (
    LEAVE_KICKED_BY_SERVER,
    LifeRange,
    Phase,
    PlannedEvent,
    SimTask,
    TaskSpec,
    UploadPlan,
    check_upload,
)

__all__ = ["TaskKey", "TaskTable"]

_EVENT_TICK = 0.02  # how often due callback events are looked for, at most

TaskKey = tuple[int, str]


@dataclass(eq=False, kw_only=True)
class TaskTable:
    """Simulated tasks by (SdkAppId, TaskId), and the callbacks they have due.

    ``rng`` draws lives (from ``random_life``) and TaskIds; ``sender`` queues the callbacks of
    ``callback`` (both None when callbacks are off).
    """

    clock: Clock
    rng: random.Random
    random_life: LifeRange
    callback: CallbackSettings | None
    sender: CallbackSender | None
    _tasks: dict[TaskKey, SimTask] = field(default_factory=dict, init=False)
    # Web tasks are asked for by TaskId alone (DescribeWebRecord, StopWebRecord).
    _web: dict[str, SimTask] = field(default_factory=dict, init=False)
    _events: list[tuple[float, int, TaskKey]] = field(default_factory=list, init=False)
    _seq: Iterator[int] = field(default_factory=itertools.count, init=False)

    # ----------------------------------------------------------------- lookups

    def visible(self, sdk_app_id: int, task_id: str, now: float) -> SimTask | None:
        """The task as the API sees it at ``now``: None when unknown or no longer shown."""
        task = self._tasks.get((sdk_app_id, task_id))
        if task is None or not task.visible(now):
            return None
        return task

    def web_by_task(self, task_id: str, now: float) -> SimTask | None:
        """The web task with this TaskId while the API can see it."""
        task = self._web.get(task_id)
        return task if task is not None and task.visible(now) else None

    def web_by_record(self, sdk_app_id: int, record_id: str, now: float) -> SimTask | None:
        """The visible web task the application started with this RecordId."""
        for task in self._web.values():
            if task.sdk_app_id == sdk_app_id and task.record_id == record_id and task.visible(now):
                return task
        return None

    def live_count(self, sdk_app_id: int, now: float) -> int:
        """Tasks of the application that have not yet gone."""
        return sum(
            1
            for (app_id, _), t in self._tasks.items()
            if app_id == sdk_app_id and t.phase(now) is not Phase.GONE
        )

    def task_status(self, sdk_app_id: int, task_id: str) -> Status | None:
        """What DescribeCloudRecording would report now; None when it answers an ended code."""
        task = self._tasks.get((sdk_app_id, task_id))
        return task.api_status(self.clock.monotonic()) if task is not None else None

    def task_info(self, sdk_app_id: int, task_id: str) -> dict[str, Any] | None:
        task = self._tasks.get((sdk_app_id, task_id))
        return task.info(self.clock.monotonic()) if task is not None else None

    def tasks_info(self) -> list[dict[str, Any]]:
        now = self.clock.monotonic()
        return [t.info(now) for t in self._tasks.values()]

    def phase_counts(self) -> dict[str, int]:
        now = self.clock.monotonic()
        counts = {p.name: 0 for p in Phase}
        for t in self._tasks.values():
            counts[t.phase(now).name] += 1
        return counts

    # ----------------------------------------------------------------- changes

    def _new_task_id(self) -> str:
        # 288 random bits: collisions are not a practical concern
        return base64.urlsafe_b64encode(self.rng.randbytes(36)).decode()

    def add_task(self, spec: TaskSpec) -> str:
        """Start the task ``spec`` asks for now and return its TaskId (see
        :meth:`Simulator.add_task`)."""
        task_id = spec.task_id if spec.task_id is not None else self._new_task_id()
        key = (spec.sdk_app_id, task_id)
        if key in self._tasks:
            raise ValueError(f"task {spec.sdk_app_id}/{task_id} already exists")
        task = SimTask.create(
            spec,
            self.clock.monotonic(),
            self.clock.time(),
            task_id=task_id,
            life=spec.life if spec.life is not None else self.random_life.draw(self.rng),
            room_id=spec.room_id if spec.room_id is not None else f"room-{len(self._tasks) + 1}",
            user_id=spec.user_id if spec.user_id is not None else f"recorder_{task_id[:16]}",
        )
        self._tasks[key] = task
        if spec.kind == "web":
            self._web[task_id] = task
        self.changed(task)
        return task_id

    def _task(self, sdk_app_id: int, task_id: str) -> SimTask:
        task = self._tasks.get((sdk_app_id, task_id))
        if task is None:
            raise KeyError(f"no simulated task {sdk_app_id}/{task_id}")
        return task

    def exit_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the recorder leave now (see :meth:`Simulator.exit_task`)."""
        return self._change(SimTask.stop, sdk_app_id, task_id, leave_code)

    def end_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the task vanish now (the API answers the ended code from now on)."""
        return self._change(SimTask.finish, sdk_app_id, task_id, leave_code)

    def _change(
        self,
        step: Callable[[SimTask, float, int], bool],
        sdk_app_id: int,
        task_id: str,
        leave_code: int,
    ) -> bool:
        task = self._task(sdk_app_id, task_id)
        changed = step(task, self.clock.monotonic(), leave_code)
        if changed:
            self.changed(task)
        return changed

    def set_upload(self, sdk_app_id: int, task_id: str, upload: UploadPlan) -> None:
        """Change how the task's upload goes (see :meth:`Simulator.set_upload`)."""
        task = self._task(sdk_app_id, task_id)
        check_upload(upload, task.vod)
        task.upload = upload
        self.changed(task)

    def changed(self, task: SimTask) -> None:
        """The task's life changed: look again for its next callback, and send what is due."""
        self._schedule(task)
        self.run_due_events()

    # ----------------------------------------------------------------- callbacks

    def _schedule(self, task: SimTask) -> None:
        if self.callback is None:
            return
        pending = task.events(self.callback.events)
        if pending:
            at = min(e.at for e in pending)
            heapq.heappush(self._events, (at, next(self._seq), (task.sdk_app_id, task.task_id)))

    def run_due_events(self) -> int:
        """Queue every callback whose time has come; returns how many."""
        if self.callback is None or self.sender is None:
            return 0
        enabled = self.callback.events
        now = self.clock.monotonic()
        sent = 0
        while self._events and self._events[0][0] <= now:
            _, _, key = heapq.heappop(self._events)
            task = self._tasks.get(key)
            if task is None:
                continue
            for event in task.events(enabled):  # in time order
                if event.at > now:
                    break
                task.sent.add(event.key)
                self.sender.enqueue(task.sdk_app_id, self._callback_body(task, event))
                sent += 1
            self._schedule(task)
        return sent

    def _callback_body(self, task: SimTask, event: PlannedEvent) -> bytes:
        return build_body(
            event.event_type,
            group=event.group,
            room_id=task.room_id,
            user_id=task.user_id,
            task_id=task.task_id,
            payload=event.payload,
            event_wall=task.wall(event.at),
            callback_wall=self.clock.time(),
        )

    async def run_events(self) -> None:
        """Send callbacks as they fall due, until cancelled."""
        while True:
            self.run_due_events()
            delay = _EVENT_TICK
            if self._events:
                delay = min(delay, max(0.0, self._events[0][0] - self.clock.monotonic()))
            await asyncio.sleep(delay)
