"""Registration input and task queries: validation shared by the API, the CLI and the config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.config import LABEL_NAME_RE, RESERVED_LABELS, TASK_ID_RE
from monitor.durations import parse_duration
from monitor.models import REGIONS, Status, Task

MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_SDK_APP_ID = 2**63 - 1
MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0


class ValidationError(ValueError):
    """Bad registration input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a user gives to register a task."""

    sdk_app_id: int
    task_id: str
    region: str
    account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    interval: float | None = None


def validate_sdk_app_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("sdk_app_id", "must be a positive integer")
    if not 0 < value <= MAX_SDK_APP_ID:
        raise ValidationError("sdk_app_id", "must be a positive integer")
    return value


def validate_task_id(value: object) -> str:
    if not isinstance(value, str) or not TASK_ID_RE.fullmatch(value):
        raise ValidationError(
            "task_id", "must be 1 to 256 characters of letters, digits and ._~+=:-"
        )
    return value


def validate_spec(
    data: Mapping[str, Any], accounts: Iterable[str], default_account: str = "default"
) -> TaskSpec:
    """Turn untrusted JSON-like input into a ``TaskSpec``; raise on the first bad field."""
    known = {"sdk_app_id", "task_id", "region", "account", "labels", "interval"}
    for name in data:
        if name not in known:
            raise ValidationError(str(name)[:64], "unknown field")
    for required in ("sdk_app_id", "task_id", "region"):
        if required not in data:
            raise ValidationError(required, "is required")
    sdk_app_id = validate_sdk_app_id(data["sdk_app_id"])
    task_id = validate_task_id(data["task_id"])
    region = data["region"]
    if not isinstance(region, str) or region not in REGIONS:
        raise ValidationError("region", f"must be one of {', '.join(REGIONS)}")
    account = data.get("account", default_account)
    account_names = set(accounts)
    if not isinstance(account, str) or account not in account_names:
        raise ValidationError(
            "account", f"must name a configured account ({', '.join(sorted(account_names))})"
        )
    labels = data.get("labels")
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        raise ValidationError("labels", "must be an object of string values")
    if len(labels) > MAX_LABELS:
        raise ValidationError("labels", f"at most {MAX_LABELS} labels")
    for k, v in labels.items():
        if not isinstance(k, str) or not LABEL_NAME_RE.fullmatch(k) or k.startswith("__"):
            raise ValidationError(f"labels.{str(k)[:64]}", "is not a valid label name")
        if k in RESERVED_LABELS:
            raise ValidationError(f"labels.{k}", "is reserved for the monitor's own labels")
        if not isinstance(v, str) or len(v) > MAX_LABEL_VALUE:
            raise ValidationError(
                f"labels.{k}", f"must be a string of at most {MAX_LABEL_VALUE} characters"
            )
    interval = data.get("interval")
    if interval is not None:
        interval = _interval(interval)
    return TaskSpec(sdk_app_id, task_id, region, account, dict(labels), interval)


def _interval(value: object) -> float:
    if isinstance(value, bool):
        raise ValidationError("interval", "must be a duration such as 15s")
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    except (ValueError, OverflowError):
        raise ValidationError("interval", "must be a duration such as 15s") from None
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValidationError("interval", "must be between 1s and 24h")
    return seconds


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: Status | None = None
    region: str | None = None
    account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, task: Task) -> bool:
        if self.status is not None and task.status is not self.status:
            return False
        if self.region is not None and task.region != self.region:
            return False
        if self.account is not None and task.account != self.account:
            return False
        return all(task.labels.get(k) == v for k, v in self.labels.items())
