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
    """One field of the task's JSON: its name, its value for a task (``full``: the answer about
    a single task), its JSON schema, and whether only a single task's answer has it."""

    name: str
    get: Callable[[Task, bool], Any]
    schema: dict[str, Any]
    full_only: bool = False


HEALTH_FIELDS: Final = (
    ApiField(
        "consecutive_errors",
        lambda t, full: t.consecutive_errors,
        {"type": "integer", "minimum": 0},
    ),
    ApiField("last_error_code", lambda t, full: t.last_error_code, nullable("string")),
    ApiField(
        "last_error_at",
        lambda t, full: iso(t.last_error_at),
        timestamp("Last failed poll", nullable=True),
    ),
    ApiField(
        "last_success_at",
        lambda t, full: iso(t.last_success_at),
        timestamp("Last successful observation", nullable=True),
    ),
    ApiField("last_request_id", lambda t, full: t.last_request_id, nullable("string")),
)

TASK_FIELDS: Final = (
    ApiField("sdk_app_id", lambda t, full: t.sdk_app_id, {"type": "integer", "format": "int64"}),
    ApiField("task_id", lambda t, full: t.task_id, {"type": "string"}),
    ApiField("region", lambda t, full: t.region, {"type": "string", "enum": list(REGIONS)}),
    ApiField("account", lambda t, full: t.account, {"type": "string"}),
    ApiField(
        "labels",
        lambda t, full: t.labels,
        {"type": "object", "additionalProperties": {"type": "string"}},
    ),
    ApiField(
        "interval_seconds",
        lambda t, full: t.interval,
        {
            "type": ["number", "null"],
            "description": "The task's own interval; null: by status, else the default",
        },
    ),
    ApiField(
        "registered_at",
        lambda t, full: iso(t.registered_at),
        timestamp("When the task was registered"),
    ),
    ApiField("status", lambda t, full: t.status.value, {"type": "string", "enum": STATUSES}),
    ApiField(
        "status_since",
        lambda t, full: iso(t.status_since),
        timestamp("When the current status began"),
    ),
    ApiField(
        "health",
        lambda t, full: {f.name: f.get(t, full) for f in HEALTH_FIELDS},
        {"$ref": "#/components/schemas/Health"},
    ),
    ApiField(
        "storage_files",
        lambda t, full: t.storage_files,
        {
            "type": ["integer", "null"],
            "description": "Entries in StorageFileList at the last observation",
        },
    ),
    ApiField(
        "kind",
        lambda t, full: t.kind.value,
        {"type": "string", "enum": [k.value for k in Kind]},
    ),
    ApiField(
        "recorder_key",
        lambda t, full: t.recorder_key,
        nullable("string")
        | {"description": "The relay recording's RecorderKey sent with every poll"},
    ),
    ApiField(
        "answer_recorder_key",
        lambda t, full: t.answer_recorder_key,
        nullable("string")
        | {"description": "The RecorderKey of the last DescribeCloudRecording answer"},
    ),
    ApiField(
        "upload",
        lambda t, full: upload_json(t.upload, full=full),
        {"$ref": "#/components/schemas/Upload"},
    ),
    ApiField(
        "last_response",
        lambda t, full: t.last_response,
        {
            "type": ["object", "null"],
            "description": "The last DescribeCloudRecording answer (single task only)",
        },
        full_only=True,
    ),
    ApiField(
        "extra",
        lambda t, full: t.extra,
        {"type": "object", "description": "Facts learnt from callbacks (single task only)"},
        full_only=True,
    ),
)
_SUMMARY_FIELDS: Final = tuple(f for f in TASK_FIELDS if not f.full_only)


def task_json(task: Task, *, full: bool = False) -> dict[str, Any]:
    """The task's JSON; ``full``: as the answer about this task alone shows it."""
    return {f.name: f.get(task, full) for f in (TASK_FIELDS if full else _SUMMARY_FIELDS)}


def object_schema(fields: Sequence[ApiField], **more: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of an object of ``fields`` (each required unless only a single task's
    answer has it), with the properties ``more`` that other answers add."""
    return {
        "type": "object",
        "required": [f.name for f in fields if not f.full_only],
        "properties": {**{f.name: f.schema for f in fields}, **more},
    }
