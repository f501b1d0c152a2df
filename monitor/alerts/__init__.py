"""Alerting (SPEC section 7): conditions (``rules``), state (``engine``), delivery
(``receivers``) and the wire shapes (``payloads``)."""

from __future__ import annotations

from monitor.alerts.engine import AlertEngine
from monitor.alerts.payloads import Notice
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.rules import (
    ALERT_NAMES,
    LEAVE_CODES,
    MONITOR_ALERTS,
    MONITOR_AUTH_FAILURE,
    MONITOR_OVER_BUDGET,
    MONITOR_THROTTLED,
    TASK_ALERTS,
    TASK_ERROR,
    TASK_EXITED,
    TASK_IDLE,
    TASK_STALE,
)

__all__ = [
    "ALERT_NAMES",
    "LEAVE_CODES",
    "MONITOR_ALERTS",
    "MONITOR_AUTH_FAILURE",
    "MONITOR_OVER_BUDGET",
    "MONITOR_THROTTLED",
    "TASK_ALERTS",
    "TASK_ERROR",
    "TASK_EXITED",
    "TASK_IDLE",
    "TASK_STALE",
    "AlertEngine",
    "Notice",
    "RetryPolicy",
]
