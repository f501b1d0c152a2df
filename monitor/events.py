"""What happened to tasks, announced once it is stored and applied (docs/polling.md).

The tracker publishes; metrics, the log, alerting, scheduling and hooks subscribe. A subscriber
reacts and never calls back into whoever published, so an observation flows one way: store,
then memory, then everyone who cares. A failing subscriber is logged and does not keep the
others from hearing the event: the change it announces has already happened.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from monitor.models import Task, TaskKey, Transition
from monitor.trtc.client import CallResult
from monitor.uploads import UploadChange

__all__ = [
    "ApiAnswered",
    "Event",
    "EventBus",
    "HealthChanged",
    "TaskObserved",
    "TaskRegistered",
    "TaskUpdated",
    "TasksPurged",
    "TasksRegistered",
    "TransitionRecorded",
    "UploadChanged",
]

log = structlog.get_logger("monitor.events")


@dataclass(frozen=True, slots=True)
class TaskRegistered:
    task: Task


@dataclass(frozen=True, slots=True)
class TasksRegistered:
    """Tasks registered together (a bulk request, a file), stored and applied in one go.

    A subscriber of :class:`TaskRegistered` still hears each task of the batch, one event per
    task; a subscriber of this event hears every registration, a single one as a batch of one,
    so it can act (log, count) once per batch.
    """

    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class TaskUpdated:
    """The task's labels or interval were changed (through the API) and stored; ``changed``
    names the fields whose values differ."""

    task: Task
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransitionRecorded:
    """A status change, stored (``transition.seq`` is set) and applied to ``task``."""

    task: Task
    transition: Transition


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """The task's polls went from succeeding to failing (``failing``) or back."""

    task: Task
    failing: bool
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class TaskObserved:
    """Anything else learnt about a task and stored: a poll's health, callback facts."""

    task: Task


@dataclass(frozen=True, slots=True)
class UploadChanged:
    """An upload callback changed the task's upload state (docs/callbacks.md), now stored."""

    task: Task
    change: UploadChange
    event_type: int


@dataclass(frozen=True, slots=True)
class TasksPurged:
    keys: Sequence[TaskKey]


@dataclass(frozen=True, slots=True)
class ApiAnswered:
    """One DescribeCloudRecording attempt came back (whatever its outcome)."""

    account: str
    region: str
    result: CallResult
    at: float
    action: str = "DescribeCloudRecording"  # which action's budget it drew on


Event = (
    TaskRegistered
    | TasksRegistered
    | TaskUpdated
    | TransitionRecorded
    | HealthChanged
    | TaskObserved
    | UploadChanged
    | TasksPurged
    | ApiAnswered
)
E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[None] | None]


class EventBus:
    """Synchronous fan-out in subscription order; coroutine handlers are awaited in turn."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[type[Any], list[Handler]] = {}

    def subscribe(self, kind: type[E], handler: Callable[[E], Awaitable[None] | None]) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def unsubscribe(self, kind: type[E], handler: Callable[[E], Awaitable[None] | None]) -> None:
        handlers = self._handlers.get(kind, [])
        if handler in handlers:
            handlers.remove(handler)

    async def publish(self, event: Event) -> None:
        """Every subscriber of the event's kind, in subscription order. Registrations are heard
        both ways: a :class:`TasksRegistered` batch reaches its own subscribers once, then each
        :class:`TaskRegistered` subscriber once per task (in the batch's order); a single
        :class:`TaskRegistered` reaches the batch subscribers as a batch of one."""
        await self._deliver(event)
        if isinstance(event, TasksRegistered):
            if self._handlers.get(TaskRegistered):
                for task in event.tasks:
                    await self._deliver(TaskRegistered(task))
        elif isinstance(event, TaskRegistered) and self._handlers.get(TasksRegistered):
            await self._deliver(TasksRegistered((event.task,)))

    async def _deliver(self, event: Event) -> None:
        for handler in tuple(self._handlers.get(type(event), ())):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # ``event`` is structlog's own argument (the message): the published event's
                # kind goes under another name, or logging the failure would itself raise.
                log.exception(
                    "event_handler_failed",
                    event_kind=type(event).__name__,
                    subscriber=_name(handler),
                )


def _name(handler: Handler) -> str:
    """The subscriber's qualified name, for the log (a bound method names its class too)."""
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else str(name)
