"""Alerting: the alert kinds (``kinds``), their conditions (``conditions``), what they say
(``texts``), the desired alerts (``rules``), the records (``state``), the decisions
(``reconcile``), delivery (``delivery``, ``receivers``, ``robots``), the wire shapes
(``payloads``) and the engine that runs them (``engine``)."""

from __future__ import annotations

from monitor.alerts.engine import AlertEngine
from monitor.alerts.kinds import (
    ALERT_NAMES,
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
from monitor.alerts.payloads import Notice
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.texts import LEAVE_CODES

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
