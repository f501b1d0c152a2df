"""Status and health rules (docs/polling.md). Pure: no I/O, no clock.

Each function takes a task and what was just learnt, updates the task in place and returns the
transition, if the status changed. The caller persists the transition before acting on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from monitor.models import (
    ERROR_OUTCOMES,
    Outcome,
    Source,
    Status,
    Task,
    Transition,
    storage_file_summary,
)
from monitor.trtc.client import CallResult


class HealthChange(enum.Enum):
    """A task's polls went from succeeding to failing, or back: worth one log line each."""

    FAILING = "failing"
    RECOVERED = "recovered"


@dataclass(frozen=True, slots=True)
class PollEffect:
    transition: Transition | None = None
    health: HealthChange | None = None


def _move(
    task: Task,
    to: Status,
    at: float,
    source: Source,
    request_id: str | None,
    detail: dict[str, Any],
) -> Transition:
    transition = Transition(
        sdk_app_id=task.sdk_app_id,
        task_id=task.task_id,
        from_status=task.status,
        to_status=to,
        at=at,
        source=source,
        request_id=request_id,
        detail=detail,
    )
    task.status = to
    task.status_since = at
    task.ended_at = at if task.final else None
    return transition


def ended_status(task: Task, now: float, resource_expired_hours: float) -> Status:
    """An ended code means gone, unless the task is so old that the API merely lost sight of it.

    After ``ResourceExpiredHour`` the API cannot see a task whose recording may well go on, so
    calling it ended would be a lie: it is ``Expired``.
    """
    age = now - task.registered_at
    return Status.EXPIRED if age >= resource_expired_hours * 3600.0 else Status.ENDED


def apply_poll(
    task: Task, result: CallResult, now: float, resource_expired_hours: float = 72.0
) -> PollEffect:
    """Fold one DescribeCloudRecording outcome into the task."""
    if task.final:
        # A poll that was in flight when the task ended or was removed: nothing to learn.
        return PollEffect()
    outcome = result.outcome
    if outcome is Outcome.THROTTLED:
        # The monitor's own budget problem, not the task's health.
        return PollEffect()
    if outcome in ERROR_OUTCOMES:
        was_healthy = task.consecutive_errors == 0
        task.consecutive_errors += 1
        task.last_error_code = result.code
        task.last_error_at = now
        if result.request_id:
            task.last_request_id = result.request_id
        return PollEffect(health=HealthChange.FAILING if was_healthy else None)

    recovered = task.consecutive_errors > 0
    task.consecutive_errors = 0
    task.last_success_at = now
    task.last_request_id = result.request_id
    health = HealthChange.RECOVERED if recovered else None
    if outcome is Outcome.ENDED:
        to = ended_status(task, now, resource_expired_hours)
        transition = _move(task, to, now, Source.POLL, result.request_id, {"code": result.code})
        return PollEffect(transition, health)

    # Outcome.OK: the answer carries a status (the client rejects answers without one).
    # Only what the API shows of the answer is kept (see Task.answer_status).
    status = result.status
    count, files = storage_file_summary(
        result.response.get("StorageFileList") if result.response else None
    )
    task.answer_status = status
    task.answer_request_id = result.request_id
    task.answer_files = files
    task.storage_files = count or 0
    key = result.response.get("RecorderKey") if result.response else None
    task.answer_recorder_key = key if isinstance(key, str) and key else None
    if status is None or status == task.status:
        return PollEffect(health=health)
    return PollEffect(_move(task, status, now, Source.POLL, result.request_id, {}), health)


def apply_removal(task: Task, now: float) -> Transition | None:
    """A user deregistered the task: an expected stop."""
    if task.status is Status.REMOVED:
        return None
    return _move(task, Status.REMOVED, now, Source.API, None, {})


def apply_callback_exit(
    task: Task, now: float, leave_code: int | None, detail: dict[str, Any] | None = None
) -> Transition | None:
    """A 302 callback said the recorder stopped: record the exit now, confirm by polling."""
    if task.final or task.status is Status.EXITED:
        return None
    info: dict[str, Any] = dict(detail or {})
    if leave_code is not None:
        info["leave_code"] = leave_code
    return _move(task, Status.EXITED, now, Source.CALLBACK, None, info)
