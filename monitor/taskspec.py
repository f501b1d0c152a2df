"""What registers a task, and the one validator for it: YAML, the API, the CLI and callbacks.

A task spec arrives as YAML (the config's ``tasks`` list), as JSON (``POST /api/v1/tasks``,
``trtc-monitor tasks add``) or from a callback; every path goes through :class:`TaskSpec`, so
``interval: 100ms`` is refused everywhere alike. YAML types scalars by their look (``room: 42``
is an integer there although the user wrote a label), so the config loader validates with the
context ``{"yaml": True}``, which reads numeric label values as the text the user typed; JSON is
explicit, and a number where a label value belongs is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from monitor.durations import parse_duration
from monitor.models import REGIONS, Kind, TaskKey
from monitor.trtc.sites import Site, site_info

__all__ = [
    "API_INTERVAL_PATTERN",
    "LABEL_NAME_PATTERN",
    "LABEL_NAME_RE",
    "MAX_BULK",
    "MAX_INTERVAL",
    "MAX_LABELS",
    "MAX_LABEL_VALUE",
    "MAX_SDK_APP_ID",
    "MIN_INTERVAL",
    "RECORDER_KEY_PATTERN",
    "RESERVED_LABELS",
    "TASK_ID_RE",
    "LabelError",
    "TaskSpec",
    "TaskUpdate",
    "ValidationError",
    "conflicting_fields",
    "site_problem",
    "validate_sdk_app_id",
    "validate_spec",
    "validate_task_id",
    "validate_update",
]

# Labels the daemon itself puts on task series and alerts; user labels may not shadow them.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "account",
        "region",
        "sdk_app_id",
        "task_id",
        "status",
        "alertname",
        "severity",
        "recorder_key",
        "kind",
    }
)
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# A label name a user may set: a Prometheus name not starting with "__" (reserved names aside).
LABEL_NAME_PATTERN = r"^(?:[a-zA-Z][a-zA-Z0-9_]*|_(?:[a-zA-Z0-9][a-zA-Z0-9_]*)?)$"
# TaskIds are URL-safe tokens; "/" is excluded because the task id is a path segment of the API.
TASK_ID_RE = re.compile(r"[A-Za-z0-9._~+=:-]{1,256}")
# A relay recording's RecorderKey (McuRecordParams.RecordKey): at most 128 letters, digits,
# underscores and hyphens, as Tencent allows it.
RECORDER_KEY_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
_RECORDER_KEY_RE = re.compile(RECORDER_KEY_PATTERN)

# Specs in one bulk registration (API and CLI): one store transaction, an answer per item.
MAX_BULK = 1000
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_SDK_APP_ID = 2**63 - 1
MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0

# The interval as text in a JSON request (API, CLI): whole seconds, minutes or hours in the
# allowed range, alone (``90s``, ``5m``, ``24h``) or as hours, minutes and seconds below 24h
# (``1h30m``, ``2m30s``). Exactly what the OpenAPI document describes, so whatever the document
# allows is taken; fractions go as a number of seconds. The YAML configuration keeps the
# whole Prometheus syntax (checked against the same bounds).
_H, _M, _S = r"(?:[1-9]|1[0-9]|2[0-3])h", r"(?:[1-9]|[1-5][0-9])m", r"(?:[1-9]|[1-5][0-9])s"
API_INTERVAL_PATTERN = (
    r"^(?:(?:[1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)s"
    r"|(?:[1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440)m"
    r"|(?:[1-9]|1[0-9]|2[0-4])h"
    rf"|{_H}(?:{_M})?(?:{_S})?|{_M}{_S})$"
)
_API_INTERVAL_RE = re.compile(API_INTERVAL_PATTERN)
_API_INTERVAL_HINT = (
    "must be a number of seconds from 1 to 86400, or a duration such as 90s, 5m, 1h30m or 24h "
    "(whole seconds, minutes or hours)"
)

_TASK_ID_HINT = "must be 1 to 256 characters of letters, digits and ._~+=:-"
_INTERVAL_HINT = "must be a duration such as 15s"


class ValidationError(ValueError):
    """Bad registration input; ``field`` names the offending field (``labels.room``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_sdk_app_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SDK_APP_ID:
        raise ValidationError("sdk_app_id", "must be a positive integer")
    return value


def validate_task_id(value: object) -> str:
    if not isinstance(value, str) or not TASK_ID_RE.fullmatch(value):
        raise ValidationError("task_id", _TASK_ID_HINT)
    return value


def _sdk_app_id(value: object) -> int:
    # JSON has one number type: 1400000001.0 is the integer 1400000001 (the OpenAPI document
    # says "integer", and JSON Schema counts it as one). Not beyond 2**53, where floats skip.
    if isinstance(value, float) and value.is_integer() and 0 < value <= 2**53:
        value = int(value)
    try:
        return validate_sdk_app_id(value)
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def _task_id(value: object) -> str:
    try:
        return validate_task_id(value)
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def _recorder_key(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _RECORDER_KEY_RE.fullmatch(value):
        raise ValueError("must be 1 to 128 letters, digits, underscores or hyphens")
    return value


def _region(value: object) -> str:
    if not isinstance(value, str) or value not in REGIONS:
        raise ValueError(f"must be one of {', '.join(REGIONS)}")
    return value


def _interval(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(_INTERVAL_HINT)
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str):
            seconds = parse_duration(value)
        else:
            raise ValueError(_INTERVAL_HINT)
    except (ValueError, OverflowError):
        raise ValueError(_INTERVAL_HINT) from None
    if not math.isfinite(seconds) or not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValueError("must be between 1s and 24h")
    return seconds


class LabelError(ValueError):
    """A problem of one label; ``name`` completes its location (``labels.<name>``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _labels(value: object, info: ValidationInfo) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be an object of string values")
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    lenient = isinstance(info.context, dict) and bool(info.context.get("yaml"))
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not LABEL_NAME_RE.fullmatch(k) or k.startswith("__"):
            raise LabelError(str(k)[:64], "is not a valid label name")
        if k in RESERVED_LABELS:
            raise LabelError(k, "is reserved for the monitor's own labels")
        if lenient and isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or len(v) > MAX_LABEL_VALUE:
            raise LabelError(k, f"must be a string of at most {MAX_LABEL_VALUE} characters")
        out[k] = v
    return out


def unknown_account(name: str, accounts: Iterable[str]) -> str:
    return f'unknown account "{name}" (configured: {", ".join(sorted(accounts)) or "none"})'


class TaskSpec(BaseModel):
    """A task to register: identity, where to poll it, labels and an optional interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sdk_app_id: Annotated[int, BeforeValidator(_sdk_app_id)]
    task_id: Annotated[str, BeforeValidator(_task_id)]
    region: Annotated[str, BeforeValidator(_region)]
    account: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    interval: Annotated[float | None, BeforeValidator(_interval)] = None
    recorder_key: Annotated[str | None, BeforeValidator(_recorder_key)] = None
    kind: Kind = Kind.CLOUD

    @field_validator("account", mode="before")
    @classmethod
    def _account_known(cls, value: object, info: ValidationInfo) -> str:
        accounts = info.context.get("accounts") if isinstance(info.context, dict) else None
        if not isinstance(value, str):
            raise ValueError("must name a configured account")
        if accounts is not None and value not in accounts:
            raise ValueError(unknown_account(value, accounts))
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_valid(cls, value: object, info: ValidationInfo) -> dict[str, str]:
        return _labels(value, info)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.sdk_app_id, self.task_id)


def _first_problem(exc: PydanticValidationError) -> ValidationError:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    field = ".".join(loc)[:128] or "body"
    kind = error["type"]
    if kind == "missing":
        return ValidationError(field, "is required")
    if kind == "extra_forbidden":
        return ValidationError(field[:64], "unknown field")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, LabelError):
        return ValidationError(f"{field}.{cause.name}", str(cause))
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    return ValidationError(field, message)


def site_problem(spec: TaskSpec, site: Site | str) -> str | None:
    """Why the account's site cannot serve the task's region; None when it can."""
    info = site_info(site)
    web = spec.kind is Kind.WEB
    if info.serves(spec.region, web=web):
        return None
    what = "web-page recording" if web else "cloud recording"
    regions = info.web_regions if web else info.regions
    return (
        f"{spec.region} is not served for {what} by the {info.site.value} site of account "
        f'"{spec.account}" (its regions: {", ".join(regions)})'
    )


def validate_spec(
    data: Mapping[str, Any], accounts: Iterable[str] | None, default_account: str = "default"
) -> TaskSpec:
    """Turn untrusted JSON-like input into a :class:`TaskSpec`; raise on the first bad field.

    ``accounts`` None leaves the account unchecked (a client that does not know them). As a
    mapping of account names to their sites, the region is checked against the account's site
    too.
    """
    body = dict(data)
    body.setdefault("account", default_account)
    context = {} if accounts is None else {"accounts": set(accounts)}
    try:
        spec = TaskSpec.model_validate(body, context=context)
    except PydanticValidationError as exc:
        raise _first_problem(exc) from None
    if isinstance(accounts, Mapping):
        problem = site_problem(spec, accounts[spec.account])
        if problem is not None:
            raise ValidationError("region", problem)
    return spec


def check_api_interval(value: object) -> None:
    """The JSON form of ``interval`` (API and CLI requests): a number, or text in the
    document's pattern (``API_INTERVAL_PATTERN``). Raises :class:`ValidationError`."""
    if isinstance(value, str) and not _API_INTERVAL_RE.fullmatch(value):
        raise ValidationError("interval", _API_INTERVAL_HINT)


def validate_api_spec(data: Mapping[str, Any], accounts: Iterable[str] | None) -> TaskSpec:
    """:func:`validate_spec` for a JSON request: the interval as the API document says."""
    spec = validate_spec(data, accounts)
    check_api_interval(data.get("interval"))
    return spec


# The fields a registration may carry besides the task's identity, in the order they are named.
_COMPARED = ("region", "account", "labels", "interval", "recorder_key", "kind")


def conflicting_fields(spec: TaskSpec, given: Iterable[str], task: Any) -> list[str]:
    """The fields of ``spec`` that differ from the registered ``task``, among those the request
    actually ``given`` (a field left out is not compared: it asks for nothing)."""
    named = set(given) | {"region"}
    return [f for f in _COMPARED if f in named and getattr(spec, f) != getattr(task, f)]


class TaskUpdate(BaseModel):
    """What ``PATCH /api/v1/tasks/{sdk_app_id}/{task_id}`` may change: the labels (the whole
    set, replaced) and the interval (null: back to the configured one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, str] | None = None
    interval: Annotated[float | None, BeforeValidator(_interval)] = None

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_valid(cls, value: object, info: ValidationInfo) -> dict[str, str]:
        if value is None:
            raise ValueError("must be an object of string values")
        return _labels(value, info)


def validate_update(data: Mapping[str, Any]) -> TaskUpdate:
    """Untrusted JSON into a :class:`TaskUpdate` (``model_fields_set`` says which fields it
    sets); raise on the first bad field, as :func:`validate_spec` does."""
    try:
        update = TaskUpdate.model_validate(dict(data))
    except PydanticValidationError as exc:
        raise _first_problem(exc) from None
    check_api_interval(data.get("interval"))
    return update
