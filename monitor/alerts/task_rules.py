"""The task alert rules, one record each: the alert's name, the kind that raises it, its
severity, the configuration section it takes its severity from, and what it says. Pure: no
I/O, no clock, no configuration.

Whether a rule holds is :mod:`monitor.alerts.conditions` (its ``TaskKind`` flag and
``task_alerts``); everything else about it is here, read by the rules (``rules``), the
decisions (``reconcile``), the settings (``settings``) and the names (``kinds``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from monitor.alerts.conditions import (
    TaskKind,
    Thresholds,
    leave_code,
    observed_at,
    stale_threshold,
    stopped_at,
)
from monitor.alerts.texts import (
    NOT_FOUND_HINT,
    ago,
    describe_leave_code,
    timestamp,
    what_happened,
    who,
)
from monitor.models import Task, Transition

__all__ = [
    "RULE_NAMED",
    "RULE_OF",
    "TASK_RULES",
    "Seen",
    "TaskRule",
    "error_annotations",
    "exit_annotations",
    "idle_annotations",
    "not_found_annotations",
    "severity_of",
    "stale_annotations",
    "upload_failed_annotations",
    "upload_overdue_annotations",
]


@dataclass(frozen=True, slots=True)
class Seen:
    """What a task alert's text may tell: the task, the time, the settings, and the transition
    that brought the task to its status (None when it is not known)."""

    task: Task
    now: float
    th: Thresholds
    interval_of: Callable[[Task], float]
    transition: Transition | None = None


@dataclass(frozen=True, slots=True)
class TaskRule:
    """One task alert."""

    kind: TaskKind
    alertname: str
    severity: str  # when the configuration does not say
    # The ``alerts`` section of the configuration whose ``severity`` the alert carries; None:
    # always ``severity``.
    section: str | None
    says: Callable[[Seen], dict[str, str]]  # the annotations: summary and description
    # What it says tells the transition that brought the task to its status: when that is not
    # known as it fires (after a restart), it is looked up and the text made again.
    tells_transition: bool = False


def exit_annotations(
    task: Task, transition: Transition | None, expected_leave_codes: frozenset[int]
) -> dict[str, str]:
    """What an exit alert says. ``transition`` is the one that brought the task to its
    current status, when known (it is not after a restart that lost nothing but the alert)."""
    status = task.status.value
    facts: list[str] = []
    happened, seen, request_id = what_happened(task, transition)
    code = seen.detail.get("code") if seen is not None else None
    detail_leave = seen.detail.get("leave_code") if seen is not None else None
    left = leave_code(task)
    if left is None and isinstance(detail_leave, int) and not isinstance(detail_leave, bool):
        left = detail_leave
    if left is not None:
        facts.append(describe_leave_code(left))
    else:
        facts.append("no leave code (no recorder-stopped callback seen)")
    if code:
        facts.append(f"error code {code}")
    if request_id:
        facts.append(f"request id {request_id}")
    expected = ", ".join(str(c) for c in sorted(expected_leave_codes)) or "none"
    meaning = {
        "Exited": "The task is being ended.",
        "Ended": "The task no longer exists.",
        "Expired": (
            "The API no longer sees the task (older than ResourceExpiredHour); the recording "
            "may still be running."
        ),
    }.get(status, "")
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}, {task.region}) stopped: {status}"
        ),
        "description": (
            f"The {who(task)} {happened}; {'; '.join(facts)}. {meaning} "
            f"Not an expected stop (expected leave codes: {expected}; deregister a task before "
            "stopping it to avoid this alert). Resolves when the task is removed or purged."
        ),
    }


def not_found_annotations(task: Task, transition: Transition | None) -> dict[str, str]:
    """What ``RecordingTaskNotFound`` says: the answer that ended the task, and the hint."""
    happened, seen, request_id = what_happened(task, transition)
    code = seen.detail.get("code") if seen is not None else None
    facts = [f"error code {code}" if code else "", f"request id {request_id}" if request_id else ""]
    said = "; ".join(f for f in facts if f)
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}, {task.region}) not found: "
            "never seen running"
        ),
        "description": (
            f"The {who(task)} {happened}: the API answered that it does not exist"
            f"{f' ({said})' if said else ''}, and it was {NOT_FOUND_HINT}. Resolves when "
            "the task is removed or purged."
        ),
    }


def error_annotations(task: Task, consecutive: int) -> dict[str, str]:
    facts = [f"last error code {task.last_error_code or 'unknown'}"]
    if task.last_request_id:
        facts.append(f"request id {task.last_request_id}")
    if task.last_error_at is not None:
        facts.append(f"at {timestamp(task.last_error_at)}")
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): {task.consecutive_errors} "
            "failed polls in a row"
        ),
        "description": (
            f"The last {task.consecutive_errors} polls of the {who(task)} failed (alert "
            f"threshold {consecutive}; throttled answers do not count): {', '.join(facts)}. "
            "Its status is not being observed. Resolves when a poll succeeds."
        ),
    }


def stale_annotations(task: Task, now: float, threshold: float) -> dict[str, str]:
    last = task.last_success_at
    age = now - observed_at(task)
    since = (
        f"last successful observation at {timestamp(last)}"
        if last is not None
        else f"never observed since its registration at {timestamp(task.registered_at)}"
    )
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}) not observed for {ago(age)}"
        ),
        "description": (
            f"No successful DescribeCloudRecording of the {who(task)} for {ago(age)} "
            f"(stale after {ago(threshold)}; {since}); its status may have changed unseen. "
            f"Status {task.status.value}, {task.consecutive_errors} failed polls in a row. "
            "Check RecordingMonitorOverBudget, RecordingMonitorThrottled and "
            f"RecordingMonitorAuthFailure for account {task.account}. Resolves when an "
            "observation succeeds."
        ),
    }


def idle_annotations(task: Task, now: float, after: float) -> dict[str, str]:
    idle_for = ago(now - task.status_since)
    return {
        "summary": f"Recording task {task.task_id} ({task.sdk_app_id}) Idle for {idle_for}",
        "description": (
            f"The {who(task)} has been Idle since {timestamp(task.status_since)} ({idle_for}, "
            f"more than {ago(after)}): it records nothing (nobody publishing in the room, or "
            "the recorder failed to join). Resolves when the status leaves Idle."
        ),
    }


def upload_failed_annotations(task: Task) -> dict[str, str]:
    """Names the failing event, the storage's code and its message."""
    upload = task.upload
    failure = upload.failure
    what = failure.describe() if failure is not None else "an upload failure"
    when = f" at {timestamp(failure.at)}" if failure is not None else ""
    later = [f for f in upload.failures if failure is not None and f.at > failure.at]
    more = ""
    if later:
        more = f" Since then: {'; '.join(f.describe() for f in later[-3:])}."
    files = len(upload.files)
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): files failed to reach storage"
            + (f" (event {failure.event_type}, {failure.code})" if failure is not None else "")
        ),
        "description": (
            f"A recording callback of the {who(task)} reported{when} that its files failed to "
            f"reach storage: {what}.{more} Files reported so far: {files}. Status "
            f"{task.status.value}. Resolves when a later callback reports the files recovered "
            "or uploaded, or the task is removed or purged."
        ),
    }


def upload_overdue_annotations(task: Task, now: float, deadline: float) -> dict[str, str]:
    at = stopped_at(task)
    since = ago(now - at) if at is not None else "unknown"
    started = task.upload.started_at
    began = f" (upload started at {timestamp(started)})" if started is not None else ""
    return {
        "summary": (
            f"Recording task {task.task_id} ({task.sdk_app_id}): upload not finished {since} "
            "after the recording stopped"
        ),
        "description": (
            f"The {who(task)} stopped{f' at {timestamp(at)}' if at is not None else ''}; its "
            f"upload had started{began} but no callback said it finished (305, 310, or 312 "
            f"after a successful 311) within {ago(deadline)}. The files may be stuck on the "
            f"recording server. Status {task.status.value}, {len(task.upload.files)} files "
            "reported. Resolves when the upload finishes, or the task is removed or purged."
        ),
    }


# The rules in the order they are reconciled.
TASK_RULES: Final[tuple[TaskRule, ...]] = (
    TaskRule(
        TaskKind.EXITED,
        "RecordingTaskExited",
        "critical",
        "exit",
        lambda s: exit_annotations(s.task, s.transition, s.th.expected_leave_codes),
        tells_transition=True,
    ),
    # A task the API says does not exist, never seen running: most likely a mistyped TaskId,
    # SdkAppId or region rather than a recording that stopped. Not a page.
    TaskRule(
        TaskKind.NOT_FOUND,
        "RecordingTaskNotFound",
        "warning",
        None,
        lambda s: not_found_annotations(s.task, s.transition),
        tells_transition=True,
    ),
    TaskRule(
        TaskKind.ERROR,
        "RecordingTaskError",
        "warning",
        "error",
        lambda s: error_annotations(s.task, s.th.consecutive),
    ),
    TaskRule(
        TaskKind.STALE,
        "RecordingTaskStale",
        "warning",
        "stale",
        lambda s: stale_annotations(
            s.task, s.now, stale_threshold(s.task, s.th.stale_after, s.interval_of)
        ),
    ),
    TaskRule(
        TaskKind.IDLE,
        "RecordingTaskIdle",
        "warning",
        "idle",
        lambda s: idle_annotations(s.task, s.now, s.th.idle_after),
    ),
    TaskRule(
        TaskKind.FAILED_UPLOAD,
        "RecordingUploadFailed",
        "critical",
        "upload",
        lambda s: upload_failed_annotations(s.task),
    ),
    TaskRule(
        TaskKind.OVERDUE_UPLOAD,
        "RecordingUploadOverdue",
        "critical",
        "upload",
        lambda s: upload_overdue_annotations(s.task, s.now, s.th.upload_deadline),
    ),
)
# Each kind's rule (``STALE_NEW`` is no rule: it qualifies ``STALE``).
RULE_OF: Final[Mapping[TaskKind, TaskRule]] = {rule.kind: rule for rule in TASK_RULES}
RULE_NAMED: Final[Mapping[str, TaskRule]] = {rule.alertname: rule for rule in TASK_RULES}


def severity_of(rule: TaskRule, th: Thresholds) -> str:
    """The severity the rule's alerts carry under the settings ``th``."""
    return th.severity.get(rule.alertname, rule.severity)
