"""The task as the API shows it: each field of its JSON written once, with how it is read from
the task and its JSON schema. The answer (``task_json``) and the OpenAPI document's ``Task``
and ``Health`` schemas (``object_schema``) are both made from these declarations, so a field
is added to both in one place."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from monitor.models import MAX_WALL_TIME, REGIONS, Kind, Status, Task
from monitor.uploads import UploadFailure, UploadState

__all__ = [
    "HEALTH_FIELDS",
    "STATUSES",
    "TASK_FIELDS",
    "ApiField",
    "iso",
    "nullable",
    "object_schema",
    "task_json",
    "timestamp",
    "upload_json",
]

STATUSES: Final = [s.value for s in Status]


def iso(ts: float | None) -> str | None:
    # 0 is "unknown" (also what a stored time no date can show is read as): null, as is None.
    if ts is None or not 0 < ts <= MAX_WALL_TIME:
        return None
    return _iso(ts)


# Tasks registered together share their times: a bulk answer formats each once.
@functools.lru_cache(maxsize=1024)
def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _failure_json(f: UploadFailure) -> dict[str, Any]:
    return {**f.to_json(), "at": iso(f.at)}


def upload_json(upload: UploadState, *, full: bool = False) -> dict[str, Any]:
    """Where the task's files went (docs/callbacks.md); the files and every failure for one task."""
    failure = upload.failure
    body: dict[str, Any] = {
        "state": upload.state.value,
        "failure": None if failure is None else _failure_json(failure),
    }
    if full:
        body.update(
            started_at=iso(upload.started_at),
            stopped_at=iso(upload.stopped_at),
            finished_at=iso(upload.finished_at),
            files=[f.to_json() for f in upload.files],
            failures=[_failure_json(f) for f in upload.failures],
        )
    return body


# --- schema pieces ----------------------------------------------------------------------------


def nullable(type_: str, **schema: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **schema}


def timestamp(description: str, *, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "format": "date-time", "description": description}
    if nullable:
        schema["type"] = ["string", "null"]
    return schema


# --- the fields -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiField:
    """One field of the task's JSON: its name, its JSON schema, its value for a task (``full``:
    in the answer about a single task; None: the task's attribute of the same name), and
    whether only a single task's answer has it."""

    name: str
    schema: dict[str, Any]
    get: Callable[[Task, bool], Any] | None = None
    full_only: bool = False


def _time(attr: str) -> Callable[[Task, bool], Any]:
    """A time of the task as ISO 8601 (null when unknown)."""
    return lambda task, full: iso(getattr(task, attr))


def _member(attr: str) -> Callable[[Task, bool], Any]:
    """An enum member of the task as its value."""
    return lambda task, full: getattr(task, attr).value


def _health(task: Task, full: bool) -> dict[str, Any]:
    return {name: get(task, full) for name, get in _HEALTH}


def _upload(task: Task, full: bool) -> dict[str, Any]:
    return upload_json(task.upload, full=full)


HEALTH_FIELDS: Final = (
    ApiField("consecutive_errors", {"type": "integer", "minimum": 0}),
    ApiField("last_error_code", nullable("string")),
    ApiField("last_error_at", timestamp("Last failed poll", nullable=True), _time("last_error_at")),
    ApiField(
        "last_success_at",
        timestamp("Last successful observation", nullable=True),
        _time("last_success_at"),
    ),
    ApiField("last_request_id", nullable("string")),
)
_SINGLE = "(single task only)"
TASK_FIELDS: Final = (
    ApiField("sdk_app_id", {"type": "integer", "format": "int64"}),
    ApiField("task_id", {"type": "string"}),
    ApiField("region", {"type": "string", "enum": list(REGIONS)}),
    ApiField("account", {"type": "string"}),
    ApiField("labels", {"type": "object", "additionalProperties": {"type": "string"}}),
    ApiField(
        "interval_seconds",
        nullable(
            "number", description="The task's own interval; null: by status, else the default"
        ),
        lambda task, full: task.interval,
    ),
    ApiField("registered_at", timestamp("When the task was registered"), _time("registered_at")),
    ApiField("status", {"type": "string", "enum": STATUSES}, _member("status")),
    ApiField("status_since", timestamp("When the current status began"), _time("status_since")),
    ApiField("health", {"$ref": "#/components/schemas/Health"}, _health),
    ApiField(
        "storage_files",
        nullable("integer", description="Entries in StorageFileList at the last observation"),
    ),
    ApiField("kind", {"type": "string", "enum": [k.value for k in Kind]}, _member("kind")),
    ApiField(
        "recorder_key",
        nullable("string", description="The relay recording's RecorderKey sent with every poll"),
    ),
    ApiField(
        "answer_recorder_key",
        nullable("string", description="The RecorderKey of the last DescribeCloudRecording answer"),
    ),
    ApiField("upload", {"$ref": "#/components/schemas/Upload"}, _upload),
    ApiField(
        "last_response",
        nullable("object", description=f"The last DescribeCloudRecording answer {_SINGLE}"),
        full_only=True,
    ),
    ApiField(
        "extra",
        {"type": "object", "description": f"Facts learnt from callbacks {_SINGLE}"},
        full_only=True,
    ),
)


def _getters(fields: Sequence[ApiField]) -> tuple[tuple[str, Callable[[Task, bool], Any]], ...]:
    def attribute(name: str) -> Callable[[Task, bool], Any]:
        return lambda task, full: getattr(task, name)

    return tuple((f.name, f.get or attribute(f.name)) for f in fields)


_HEALTH: Final = _getters(HEALTH_FIELDS)
_FULL: Final = _getters(TASK_FIELDS)
_SUMMARY: Final = _getters([f for f in TASK_FIELDS if not f.full_only])


def task_json(task: Task, *, full: bool = False) -> dict[str, Any]:
    """The task's JSON; ``full``: as the answer about this task alone shows it."""
    return {name: get(task, full) for name, get in (_FULL if full else _SUMMARY)}


def object_schema(fields: Sequence[ApiField], **more: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of an object of ``fields`` (each required unless only a single task's
    answer has it), with the properties ``more`` that other answers add."""
    return {
        "type": "object",
        "required": [f.name for f in fields if not f.full_only],
        "properties": {**{f.name: f.schema for f in fields}, **more},
    }
