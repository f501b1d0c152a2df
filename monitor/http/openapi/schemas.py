"""The component schemas of the OpenAPI document: a task, its health, transitions, uploads,
alerts, pages and errors, with the limits the validator applies. The task's and its health's
come from the fields of its JSON (``monitor.http.task_view``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from monitor.http.task_view import (
    HEALTH_FIELDS,
    STATUSES,
    TASK_FIELDS,
    nullable,
    object_schema,
    timestamp,
)
from monitor.models import REGIONS, Kind, Source
from monitor.taskspec import (
    API_INTERVAL_PATTERN,
    LABEL_NAME_PATTERN,
    MAX_INTERVAL,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MIN_INTERVAL,
    RECORDER_KEY_PATTERN,
    RESERVED_LABELS,
    TASK_ID_RE,
)
from monitor.trtc.sites import site_info
from monitor.uploads import FileKind, UploadPhase

TASK = {"$ref": "#/components/schemas/Task"}
_TRANSITION = {"$ref": "#/components/schemas/Transition"}
TASK_ID_PATTERN = f"^{TASK_ID_RE.pattern}$"


def _by_index(required: list[str], **properties: Any) -> dict[str, Any]:
    """What an answer says about one item of a request's array: its ``index`` in it, then
    ``properties`` (``required`` among them)."""
    return {
        "type": "object",
        "required": ["index", *required],
        "properties": {"index": {"type": "integer", "minimum": 0}, **properties},
    }


def _labels(*, nullable: bool) -> dict[str, Any]:
    return {
        "type": ["object", "null"] if nullable else "object",
        "description": "Prometheus label names, not starting with __; "
        f"{', '.join(sorted(RESERVED_LABELS))} are reserved",
        "maxProperties": MAX_LABELS,
        "propertyNames": {
            "pattern": LABEL_NAME_PATTERN,
            "not": {"enum": sorted(RESERVED_LABELS)},
        },
        "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE},
    }


def _interval(description: str) -> dict[str, Any]:
    return {
        "oneOf": [
            {"type": "number", "minimum": MIN_INTERVAL, "maximum": MAX_INTERVAL},
            {"type": "string", "pattern": API_INTERVAL_PATTERN},
            {"type": "null"},
        ],
        "description": description,
    }


def _account(accounts: Collection[str] | None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "string",
        "description": "A configured account; default: default",
    }
    if accounts:
        schema["enum"] = sorted(accounts)
    return schema


_RECORDER_KEY: dict[str, Any] = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": 128,
    "pattern": RECORDER_KEY_PATTERN,
    "description": "A relay recording's RecorderKey (McuRecordParams.RecordKey), sent with "
    "every DescribeCloudRecording; null or absent: none",
}


_KIND: dict[str, Any] = {
    "type": "string",
    "enum": [k.value for k in Kind],
    "description": "cloud (default): a cloud recording, polled with DescribeCloudRecording; "
    "web: a web-page recording (StartWebRecord's TaskId), polled with DescribeWebRecord",
}


def _site_regions(accounts: Collection[str] | None) -> dict[str, Any]:
    """With the accounts' sites known: the regions each account's site serves, per kind (a
    task elsewhere is refused with 422)."""
    if not isinstance(accounts, Mapping):
        return {}
    rules: list[dict[str, Any]] = []
    for name, site in sorted(accounts.items()):
        info = site_info(site)
        # An absent account is the default one; an absent kind is cloud.
        needs_account = [] if name == "default" else ["account"]
        for kind, regions in (("web", info.web_regions), ("cloud", info.regions)):
            when = {
                "properties": {"account": {"const": name}, "kind": {"const": kind}},
                "required": [*needs_account, *(["kind"] if kind == "web" else [])],
            }
            rules.append({"if": when, "then": {"properties": {"region": {"enum": list(regions)}}}})
    return {"allOf": rules}


def schemas(accounts: Collection[str] | None) -> dict[str, Any]:
    return {
        "Alert": {
            "type": "object",
            "required": ["alertname", "state", "labels", "annotations", "starts_at"],
            "properties": {
                "alertname": {"type": "string"},
                "state": {"type": "string", "enum": ["firing"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "starts_at": {"type": "string", "format": "date-time"},
                "fingerprint": {"type": "string"},
            },
        },
        "Registration": {
            "type": "object",
            "additionalProperties": False,
            "required": ["sdk_app_id", "task_id", "region"],
            **_site_regions(accounts),
            "properties": {
                "sdk_app_id": {"type": "integer", "format": "int64", "minimum": 1},
                "task_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": TASK_ID_PATTERN,
                },
                "region": {"type": "string", "enum": list(REGIONS)},
                "account": _account(accounts),
                "labels": _labels(nullable=True),
                "interval": _interval(
                    "Polling interval: seconds (1 to 86400), or a duration such as 90s, 5m, "
                    "1h30m, 24h; null or absent: by status, as configured"
                ),
                "recorder_key": _RECORDER_KEY,
                "kind": _KIND,
            },
        },
        "TaskUpdate": {
            "type": "object",
            "additionalProperties": False,
            "description": "What to change; a field left out stays as it is",
            "properties": {
                "labels": _labels(nullable=False)
                | {
                    "description": "The new labels: the whole "
                    "set, replacing the old one ({} removes them all)"
                },
                "interval": _interval(
                    "The new polling interval (as at registration); null: back to the "
                    "configured one"
                ),
            },
        },
        "Health": object_schema(HEALTH_FIELDS),
        "Task": object_schema(
            TASK_FIELDS,
            recent_transitions={
                "type": "array",
                "items": _TRANSITION,
                "description": "Newest first (GET of a single task only)",
            },
        ),
        "Upload": {
            "type": "object",
            "description": (
                "Where the task's files went, from the upload callbacks (303-312); files, "
                "failures and times only for a single task"
            ),
            "required": ["state", "failure"],
            "properties": {
                "state": {"type": "string", "enum": [p.value for p in UploadPhase]},
                "failure": {
                    "oneOf": [{"$ref": "#/components/schemas/UploadFailure"}, {"type": "null"}],
                    "description": "The failure named by RecordingUploadFailed",
                },
                "started_at": timestamp("First upload-started event", nullable=True),
                "stopped_at": timestamp("When the recording stopped", nullable=True),
                "finished_at": timestamp("Latest upload-finished event", nullable=True),
                "files": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/UploadFile"},
                    "description": "COS slices, MP4 files and VOD media reported",
                },
                "failures": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/UploadFailure"},
                    "description": "Failures reported, oldest first (the newest 20)",
                },
            },
        },
        "UploadFailure": {
            "type": "object",
            "required": ["event_type", "event", "code", "message", "at"],
            "properties": {
                "event_type": {"type": "integer"},
                "event": {"type": "string"},
                "code": {"type": "string", "description": "The storage's Code, or Status N"},
                "message": {"type": "string"},
                "at": timestamp("When the event happened"),
            },
        },
        "UploadFile": {
            "type": "object",
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string", "enum": [k.value for k in FileKind]},
                "name": {"type": "string"},
                "user_id": {"type": "string"},
                "track_type": {"type": "string"},
                "file_id": {"type": "string", "description": "VOD FileId"},
                "url": {"type": "string", "description": "VOD VideoUrl"},
                "media_id": {"type": "string"},
                "begin_ms": {"type": "integer"},
                "end_ms": {"type": "integer"},
            },
        },
        "TaskPage": {
            "type": "object",
            "required": ["tasks", "total", "next_offset"],
            "properties": {
                "tasks": {"type": "array", "items": TASK},
                "total": {"type": "integer", "minimum": 0},
                "next_offset": {
                    "type": ["integer", "null"],
                    "description": "Offset of the next page; null on the last page",
                },
            },
        },
        "Transition": {
            "type": "object",
            "required": ["seq", "from", "to", "at", "source", "request_id", "detail"],
            "properties": {
                "seq": {"type": "integer"},
                "from": {"type": "string", "enum": STATUSES},
                "to": {"type": "string", "enum": STATUSES},
                "at": timestamp("When the change was observed"),
                "source": {"type": "string", "enum": [s.value for s in Source]},
                "request_id": nullable("string"),
                "detail": {"type": "object"},
            },
        },
        "BulkResult": {
            "type": "object",
            "required": ["results", "created", "existing", "conflicts", "invalid"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": _by_index(
                        ["status", "task"],
                        status={
                            "type": "integer",
                            "enum": [200, 201, 409],
                            "description": "201 registered, 200 already registered with "
                            "the same values, 409 registered with other values (see error; "
                            "task is the registered one, unchanged)",
                        },
                        task=TASK,
                        error={"$ref": "#/components/schemas/ConflictError"},
                    ),
                },
                "created": {"type": "integer", "minimum": 0},
                "existing": {"type": "integer", "minimum": 0},
                "conflicts": {"type": "integer", "minimum": 0},
                "invalid": {
                    "type": "integer",
                    "enum": [0],
                    "description": "Always 0: one invalid item refuses the whole array (422)",
                },
            },
        },
        "ConflictError": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "enum": ["conflict"]},
                "message": {"type": "string"},
                "fields": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "string",
                        "enum": [
                            "region",
                            "account",
                            "labels",
                            "interval",
                            "recorder_key",
                            "kind",
                        ],
                    },
                    "description": "The fields whose values differ from the registered task's",
                },
                "task": TASK,
            },
        },
        "History": {
            "type": "object",
            "required": ["sdk_app_id", "task_id", "transitions"],
            "properties": {
                "sdk_app_id": {"type": "integer", "format": "int64"},
                "task_id": {"type": "string"},
                "transitions": {"type": "array", "items": _TRANSITION},
            },
        },
    }


def error_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}},
        },
        "ErrorBody": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "task": TASK,
                "items": {
                    "type": "array",
                    "description": "An array refused (422): each invalid item by index",
                    "items": _by_index(
                        ["code", "message"], code={"type": "string"}, message={"type": "string"}
                    ),
                },
            },
        },
    }
