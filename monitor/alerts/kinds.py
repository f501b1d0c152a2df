"""The alerts the monitor raises: their names, and the task alert kinds as flags.

A task alert kind (``TaskKind``) is what the conditions decide for one task; its ``alertname``
is what receivers see. The monitor-level alerts (about an account, not a task) have names only.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ALERT_NAMES",
    "MONITOR_ALERTS",
    "MONITOR_AUTH_FAILURE",
    "MONITOR_CREDENTIALS_EXPIRING",
    "MONITOR_NO_CREDENTIALS",
    "MONITOR_OVER_BUDGET",
    "MONITOR_SEVERITY",
    "MONITOR_THROTTLED",
    "NOT_FOUND_SEVERITY",
    "NO_TASK_ALERT",
    "TASK_ALERTS",
    "TASK_ERROR",
    "TASK_EXITED",
    "TASK_IDLE",
    "TASK_KINDS",
    "TASK_NOT_FOUND",
    "TASK_SEVERITY",
    "TASK_STALE",
    "UPLOAD_FAILED",
    "UPLOAD_OVERDUE",
    "TaskKind",
]

TASK_EXITED: Final = "RecordingTaskExited"
TASK_NOT_FOUND: Final = "RecordingTaskNotFound"
TASK_ERROR: Final = "RecordingTaskError"
TASK_STALE: Final = "RecordingTaskStale"
TASK_IDLE: Final = "RecordingTaskIdle"
UPLOAD_FAILED: Final = "RecordingUploadFailed"
UPLOAD_OVERDUE: Final = "RecordingUploadOverdue"
MONITOR_AUTH_FAILURE: Final = "RecordingMonitorAuthFailure"
MONITOR_NO_CREDENTIALS: Final = "RecordingMonitorNoCredentials"
MONITOR_THROTTLED: Final = "RecordingMonitorThrottled"
MONITOR_OVER_BUDGET: Final = "RecordingMonitorOverBudget"
MONITOR_CREDENTIALS_EXPIRING: Final = "RecordingMonitorCredentialsExpiring"

TASK_ALERTS: Final = (
    TASK_EXITED,
    TASK_NOT_FOUND,
    TASK_ERROR,
    TASK_STALE,
    TASK_IDLE,
    UPLOAD_FAILED,
    UPLOAD_OVERDUE,
)
MONITOR_ALERTS: Final = (
    MONITOR_AUTH_FAILURE,
    MONITOR_NO_CREDENTIALS,
    MONITOR_THROTTLED,
    MONITOR_OVER_BUDGET,
    MONITOR_CREDENTIALS_EXPIRING,
)
ALERT_NAMES: Final = TASK_ALERTS + MONITOR_ALERTS

# The configuration has no section for most of the monitor's own alerts: rejected credentials
# blind the monitor to every task of the account, the other two only degrade it. Expiring
# credentials have alerts.credentials (this is its default).
MONITOR_SEVERITY: Final[dict[str, str]] = {
    MONITOR_AUTH_FAILURE: "critical",
    # Blind to every task of the account, as rejected credentials are.
    MONITOR_NO_CREDENTIALS: "critical",
    MONITOR_THROTTLED: "warning",
    MONITOR_OVER_BUDGET: "warning",
    MONITOR_CREDENTIALS_EXPIRING: "warning",
}
# A task the API says does not exist, never seen running: most likely a mistyped TaskId,
# SdkAppId or region rather than a recording that stopped. Not a page.
NOT_FOUND_SEVERITY: Final = "warning"
# The severity of each task alert when the configuration does not say.
TASK_SEVERITY: Final[dict[str, str]] = {
    TASK_EXITED: "critical",
    TASK_NOT_FOUND: NOT_FOUND_SEVERITY,
    TASK_ERROR: "warning",
    TASK_STALE: "warning",
    TASK_IDLE: "warning",
    UPLOAD_FAILED: "critical",
    UPLOAD_OVERDUE: "critical",
}


class TaskKind(enum.Flag):
    """Which task alerts hold for one task. ``STALE_NEW`` is no alert of its own: it qualifies
    ``STALE`` as counted from the engine's start at the earliest. An alert already firing
    stays while ``STALE`` holds, a new one needs ``STALE_NEW``, so a restart neither resolves
    standing stale alerts nor blames the tasks for the monitor's own downtime."""

    EXITED = 1
    ERROR = 2
    STALE = 4
    IDLE = 8
    STALE_NEW = 16
    FAILED_UPLOAD = 32
    OVERDUE_UPLOAD = 64
    NOT_FOUND = 128

    @property
    def alertname(self) -> str:
        """The alert this single kind raises (``STALE_NEW`` raises ``STALE``'s)."""
        return _NAMES[self]


NO_TASK_ALERT: Final = TaskKind(0)

# The kinds that are alerts, in the order they are reconciled, with their names.
TASK_KINDS: Final[tuple[tuple[TaskKind, str], ...]] = (
    (TaskKind.EXITED, TASK_EXITED),
    (TaskKind.NOT_FOUND, TASK_NOT_FOUND),
    (TaskKind.ERROR, TASK_ERROR),
    (TaskKind.STALE, TASK_STALE),
    (TaskKind.IDLE, TASK_IDLE),
    (TaskKind.FAILED_UPLOAD, UPLOAD_FAILED),
    (TaskKind.OVERDUE_UPLOAD, UPLOAD_OVERDUE),
)
_NAMES: Final[dict[TaskKind, str]] = dict(TASK_KINDS) | {TaskKind.STALE_NEW: TASK_STALE}
