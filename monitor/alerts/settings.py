"""The rules' settings, built from the ``alerts`` section of the configuration. The rules
never read the configuration themselves: this is the one place that knows both shapes."""

from __future__ import annotations

from monitor.alerts.conditions import StaleRule, Thresholds
from monitor.alerts.kinds import (
    NOT_FOUND_SEVERITY,
    TASK_ERROR,
    TASK_EXITED,
    TASK_IDLE,
    TASK_NOT_FOUND,
    TASK_STALE,
    UPLOAD_FAILED,
    UPLOAD_OVERDUE,
)
from monitor.config import AlertsConfig

__all__ = ["thresholds_of"]


def thresholds_of(config: AlertsConfig) -> Thresholds:
    """The settings the rules read, from the ``alerts`` section of the configuration."""
    return Thresholds(
        exit_enabled=config.exit.enabled,
        expected_leave_codes=frozenset(config.exit.expected_leave_codes),
        error_enabled=config.error.enabled,
        consecutive=config.error.consecutive,
        stale_enabled=config.stale.enabled,
        stale_after=StaleRule(
            multiple=config.stale.after.multiple, duration=config.stale.after.duration
        ),
        idle_enabled=config.idle.enabled,
        idle_after=config.idle.after,
        upload_enabled=config.upload.enabled,
        upload_deadline=config.upload.deadline,
        credentials_enabled=config.credentials.enabled,
        credentials_before=config.credentials.before,
        credentials_severity=config.credentials.severity,
        severity={
            TASK_EXITED: config.exit.severity,
            TASK_NOT_FOUND: NOT_FOUND_SEVERITY,
            TASK_ERROR: config.error.severity,
            TASK_STALE: config.stale.severity,
            TASK_IDLE: config.idle.severity,
            UPLOAD_FAILED: config.upload.severity,
            UPLOAD_OVERDUE: config.upload.severity,
        },
    )
