"""The rules' settings, built from the ``alerts`` section of the configuration. The rules
never read the configuration themselves: this is the one place that knows both shapes, and it
knows them by name only (each ``Thresholds`` field names its key, each rule its section)."""

from __future__ import annotations

import dataclasses
from typing import Any

from monitor.alerts.conditions import Thresholds
from monitor.alerts.task_rules import TASK_RULES
from monitor.config import AlertsConfig

__all__ = ["thresholds_of"]


def _key(config: AlertsConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def thresholds_of(config: AlertsConfig) -> Thresholds:
    """The settings the rules read, from the ``alerts`` section of the configuration."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Thresholds):
        key = field.metadata.get("config")
        if key is not None:
            convert = field.metadata["convert"]
            value = _key(config, key)
            values[field.name] = value if convert is None else convert(value)
    values["severity"] = {
        rule.alertname: _key(config, f"{rule.section}.severity")
        for rule in TASK_RULES
        if rule.section is not None
    }
    return Thresholds(**values)
