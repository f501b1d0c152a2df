"""The log of what happens to tasks: one structured line per transition, per health flip and per
registration (a batch registered together is one line with its count).

Log on change, not on every poll: a task whose polls keep failing logs once when they start
failing and once when they recover; counters say the rest.
"""

from __future__ import annotations

from typing import Any

import structlog

from monitor.events import (
    EventBus,
    HealthChanged,
    TasksRegistered,
    TaskUpdated,
    TransitionRecorded,
    UploadChanged,
)
from monitor.models import Task
from monitor.uploads import Change

__all__ = ["subscribe"]

# What a logger is bound with: when one of them is another object, bind again.
_CONFIG_KEYS = ("processors", "logger_factory", "wrapper_class", "context_class")
_UNSET = object()


class _Logger:
    """The journal's logger, bound once per logging configuration.

    ``structlog.get_logger`` gives a proxy that, with ``cache_logger_on_first_use`` off (as the
    daemon configures it, so that loggers follow a reconfiguration), builds a new bound logger on
    every call. This one binds again only when the configuration has changed (another chain, as
    ``configure_logging`` and ``structlog.testing.capture_logs`` install), so it still follows
    every reconfiguration.
    """

    __slots__ = ("_bound", "_config", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._config: tuple[object, ...] = (_UNSET,) * len(_CONFIG_KEYS)
        self._bound: Any = None

    def __getattr__(self, method: str) -> Any:
        config = structlog.get_config()
        now = tuple(config[k] for k in _CONFIG_KEYS)
        if any(a is not b for a, b in zip(now, self._config, strict=True)):
            self._bound = structlog.get_logger(self._name).bind()
            self._config = now
        return getattr(self._bound, method)


log = _Logger("monitor.tracker")


def _who(task: Task) -> dict[str, object]:
    """The fields that say which task a line is about, where it is polled."""
    return {
        "sdk_app_id": task.sdk_app_id,
        "task_id": task.task_id,
        "account": task.account,
        "region": task.region,
    }


def subscribe(bus: EventBus) -> None:
    bus.subscribe(TasksRegistered, _registered)
    bus.subscribe(TaskUpdated, _updated)
    bus.subscribe(TransitionRecorded, _transition)
    bus.subscribe(HealthChanged, _health)
    bus.subscribe(UploadChanged, _upload)


def _upload(event: UploadChanged) -> None:
    """One line when the upload state changes (a new file alone is not worth one)."""
    task, change = event.task, event.change
    if change.change is None:
        return
    state = change.state
    fields = {
        **_who(task),
        "event_type": event.event_type,
        "change": change.change.value,
        "upload_state": state.state.value,
        "files": len(state.files),
    }
    if change.change is Change.FAILED and state.failure is not None:
        log.warning("task_upload", failure=state.failure.describe(), **fields)
    else:
        log.info("task_upload", **fields)


def _updated(event: TaskUpdated) -> None:
    task = event.task
    log.info(
        "task_updated",
        **_who(task),
        changed=list(event.changed),
        labels=task.labels,
        interval=task.interval,
    )


def _registered(event: TasksRegistered) -> None:
    """One line per registration, or per batch (with its count) when several came together:
    a bulk request of 1,000 tasks is one line, not 1,000."""
    if len(event.tasks) > 1:
        tasks = event.tasks
        log.info(
            "tasks_registered",
            count=len(tasks),
            sources=sorted({task.source.value for task in tasks}),
            accounts=sorted({task.account for task in tasks}),
            regions=sorted({task.region for task in tasks}),
            first_task_id=tasks[0].task_id,
            last_task_id=tasks[-1].task_id,
        )
        return
    [task] = event.tasks
    log.info("task_registered", **_who(task), source=task.source.value)


def _transition(event: TransitionRecorded) -> None:
    task, t = event.task, event.transition
    log.info(
        "task_transition",
        **_who(task),
        from_status=t.from_status.value,
        to_status=t.to_status.value,
        source=t.source.value,
        request_id=t.request_id,
        **{k: v for k, v in t.detail.items() if isinstance(v, str | int | float)},
    )


def _health(event: HealthChanged) -> None:
    task = event.task
    if event.failing:
        log.warning(
            "task_polls_failing",
            **_who(task),
            outcome=event.outcome,
            code=event.code,
            message=event.message,
            request_id=event.request_id,
        )
    else:
        log.info("task_polls_recovered", **_who(task))
