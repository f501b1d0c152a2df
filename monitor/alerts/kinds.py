"""The alerts the monitor raises, by name.

The task alerts are the rules of :data:`monitor.alerts.task_rules.TASK_RULES` (their names,
kinds and severities come from there); the monitor-level alerts (about an account, not a task)
are named here, with their severities.
"""

from __future__ import annotations

from typing import Final

from monitor.alerts.conditions import NO_TASK_ALERT, TaskKind
from monitor.alerts.task_rules import RULE_OF, TASK_RULES

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

# The task alerts other code names.
TASK_EXITED: Final = RULE_OF[TaskKind.EXITED].alertname
TASK_NOT_FOUND: Final = RULE_OF[TaskKind.NOT_FOUND].alertname
TASK_ERROR: Final = RULE_OF[TaskKind.ERROR].alertname
TASK_STALE: Final = RULE_OF[TaskKind.STALE].alertname
TASK_IDLE: Final = RULE_OF[TaskKind.IDLE].alertname
UPLOAD_FAILED: Final = RULE_OF[TaskKind.FAILED_UPLOAD].alertname
UPLOAD_OVERDUE: Final = RULE_OF[TaskKind.OVERDUE_UPLOAD].alertname
NOT_FOUND_SEVERITY: Final = RULE_OF[TaskKind.NOT_FOUND].severity

MONITOR_AUTH_FAILURE: Final = "RecordingMonitorAuthFailure"
MONITOR_NO_CREDENTIALS: Final = "RecordingMonitorNoCredentials"
MONITOR_THROTTLED: Final = "RecordingMonitorThrottled"
MONITOR_OVER_BUDGET: Final = "RecordingMonitorOverBudget"
MONITOR_CREDENTIALS_EXPIRING: Final = "RecordingMonitorCredentialsExpiring"

# The kinds that are alerts, in the order they are reconciled, with their names.
TASK_KINDS: Final[tuple[tuple[TaskKind, str], ...]] = tuple(
    (rule.kind, rule.alertname) for rule in TASK_RULES
)
TASK_ALERTS: Final = tuple(rule.alertname for rule in TASK_RULES)
# The severity of each task alert when the configuration does not say.
TASK_SEVERITY: Final[dict[str, str]] = {rule.alertname: rule.severity for rule in TASK_RULES}
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
