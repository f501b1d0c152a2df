"""OpenAPI 3 description of the task API, built from one table of operations."""

from __future__ import annotations

from typing import Any

from monitor import __version__
from monitor.http.api import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE
from monitor.models import REGIONS, Source, Status
from monitor.taskspec import MAX_BULK, MAX_LABEL_VALUE, MAX_LABELS, TASK_ID_RE
from monitor.uploads import FileKind, UploadPhase

_ERROR = {"$ref": "#/components/responses/Error"}
_TASK = {"$ref": "#/components/schemas/Task"}
_TRANSITION = {"$ref": "#/components/schemas/Transition"}
_STATUSES = [s.value for s in Status]
_TASK_ID_PATTERN = f"^{TASK_ID_RE.pattern}$"
_TASK_PATH_PARAMS = [
    {
        "name": "sdk_app_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 1},
    },
    {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": _TASK_ID_PATTERN},
    },
]
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR for status in statuses}


def _timestamp(description: str, *, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "format": "date-time", "description": description}
    if nullable:
        schema["nullable"] = True
    return schema


def _schemas() -> dict[str, Any]:
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
            "properties": {
                "sdk_app_id": {"type": "integer", "format": "int64", "minimum": 1},
                "task_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": _TASK_ID_PATTERN,
                },
                "region": {"type": "string", "enum": list(REGIONS)},
                "account": {
                    "type": "string",
                    "description": "A configured account; default: default",
                },
                "labels": {
                    "type": "object",
                    "description": "Prometheus label names; account, region, sdk_app_id, "
                    "task_id, status, alertname and severity are reserved",
                    "maxProperties": MAX_LABELS,
                    "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE},
                },
                "interval": {
                    "oneOf": [{"type": "string"}, {"type": "number"}],
                    "description": "Polling interval: a duration such as 10s, or seconds; "
                    "from 1s to 24h",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": [
                "consecutive_errors",
                "last_error_code",
                "last_error_at",
                "last_success_at",
                "last_request_id",
            ],
            "properties": {
                "consecutive_errors": {"type": "integer", "minimum": 0},
                "last_error_code": {"type": "string", "nullable": True},
                "last_error_at": _timestamp("Last failed poll", nullable=True),
                "last_success_at": _timestamp("Last successful observation", nullable=True),
                "last_request_id": {"type": "string", "nullable": True},
            },
        },
        "Task": {
            "type": "object",
            "required": [
                "sdk_app_id",
                "task_id",
                "region",
                "account",
                "labels",
                "interval_seconds",
                "registered_at",
                "status",
                "status_since",
                "health",
                "storage_files",
                "upload",
            ],
            "properties": {
                "sdk_app_id": {"type": "integer", "format": "int64"},
                "task_id": {"type": "string"},
                "region": {"type": "string", "enum": list(REGIONS)},
                "account": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "interval_seconds": {
                    "type": "number",
                    "nullable": True,
                    "description": "The task's own interval; null: by status, else the default",
                },
                "registered_at": _timestamp("When the task was registered"),
                "status": {"type": "string", "enum": _STATUSES},
                "status_since": _timestamp("When the current status began"),
                "health": {"$ref": "#/components/schemas/Health"},
                "storage_files": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Entries in StorageFileList at the last observation",
                },
                "upload": {"$ref": "#/components/schemas/Upload"},
                "last_response": {
                    "type": "object",
                    "nullable": True,
                    "description": "The last DescribeCloudRecording answer (single task only)",
                },
                "extra": {
                    "type": "object",
                    "description": "Facts learnt from callbacks (single task only)",
                },
                "recent_transitions": {
                    "type": "array",
                    "items": _TRANSITION,
                    "description": "Newest first (GET of a single task only)",
                },
            },
        },
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
                    "allOf": [{"$ref": "#/components/schemas/UploadFailure"}],
                    "nullable": True,
                    "description": "The failure named by RecordingUploadFailed",
                },
                "started_at": _timestamp("First upload-started event", nullable=True),
                "stopped_at": _timestamp("When the recording stopped", nullable=True),
                "finished_at": _timestamp("Latest upload-finished event", nullable=True),
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
                "at": _timestamp("When the event happened"),
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
                "tasks": {"type": "array", "items": _TASK},
                "total": {"type": "integer", "minimum": 0},
                "next_offset": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Offset of the next page; null on the last page",
                },
            },
        },
        "Transition": {
            "type": "object",
            "required": ["seq", "from", "to", "at", "source", "request_id", "detail"],
            "properties": {
                "seq": {"type": "integer"},
                "from": {"type": "string", "enum": _STATUSES},
                "to": {"type": "string", "enum": _STATUSES},
                "at": _timestamp("When the change was observed"),
                "source": {"type": "string", "enum": [s.value for s in Source]},
                "request_id": {"type": "string", "nullable": True},
                "detail": {"type": "object"},
            },
        },
        "BulkResult": {
            "type": "object",
            "required": ["results", "created", "existing", "invalid"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "status"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "status": {
                                "type": "integer",
                                "enum": [200, 201, 422],
                                "description": "201 registered, 200 already registered, "
                                "422 invalid (see error)",
                            },
                            "task": _TASK,
                            "error": {"type": "object"},
                        },
                    },
                },
                "created": {"type": "integer", "minimum": 0},
                "existing": {"type": "integer", "minimum": 0},
                "invalid": {"type": "integer", "minimum": 0},
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


def _list_parameters() -> list[dict[str, Any]]:
    return [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": _STATUSES}},
        {"name": "region", "in": "query", "schema": {"type": "string", "enum": list(REGIONS)}},
        {"name": "account", "in": "query", "schema": {"type": "string"}},
        {
            "name": "label",
            "in": "query",
            "description": "name:value; repeatable, every one must match",
            "schema": {"type": "array", "items": {"type": "string"}},
            "style": "form",
            "explode": True,
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PAGE,
                "default": DEFAULT_PAGE,
            },
        },
        {
            "name": "offset",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        },
    ]


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "trtc-recording-monitor",
            "version": __version__,
            "description": "Register TRTC on-cloud recording tasks and read their state. "
            'Errors are {"error": {"code": ..., "message": ...}}.',
        },
        "paths": {
            "/api/v1/tasks": {
                "get": {
                    "operationId": "listTasks",
                    "summary": "List tasks, sorted by sdk_app_id and task_id",
                    "parameters": _list_parameters(),
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/TaskPage"}, "A page of tasks"),
                        **_errors(400),
                    },
                },
                "post": {
                    "operationId": "registerTask",
                    "summary": "Register a task (idempotent), or up to "
                    f"{MAX_BULK} tasks in one transaction",
                    "security": _SECURED,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Registration"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": MAX_BULK,
                                            "items": {"$ref": "#/components/schemas/Registration"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(_TASK, "Registered"),
                        "200": _json(
                            {"oneOf": [_TASK, {"$ref": "#/components/schemas/BulkResult"}]},
                            "Already registered: the registered task; or, for an array, "
                            "one result per item by index",
                        ),
                        **_errors(400, 401, 403, 413, 415, 422, 503),
                    },
                },
            },
            "/api/v1/tasks/{sdk_app_id}/{task_id}": {
                "parameters": _TASK_PATH_PARAMS,
                "get": {
                    "operationId": "getTask",
                    "summary": "One task with its status, health, last response and recent "
                    "transitions",
                    "responses": {"200": _json(_TASK, "The task"), **_errors(400, 404)},
                },
                "delete": {
                    "operationId": "removeTask",
                    "summary": "Deregister a task (an expected stop: no exit alert)",
                    "security": _SECURED,
                    "responses": {
                        "200": _json(_TASK, "Removed"),
                        **_errors(400, 401, 403, 404, 503),
                    },
                },
            },
            "/api/v1/tasks/{sdk_app_id}/{task_id}/transitions": {
                "parameters": _TASK_PATH_PARAMS,
                "get": {
                    "operationId": "getTransitions",
                    "summary": "Full transition history, newest first",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/History"}, "The history"),
                        **_errors(400, 404),
                    },
                },
            },
            "/api/v1/alerts": {
                "get": {
                    "operationId": "listAlerts",
                    "summary": "Alerts currently firing",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["alerts"],
                                "properties": {
                                    "alerts": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Alert"},
                                    }
                                },
                            },
                            "Firing alerts, oldest first",
                        )
                    },
                },
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": _json(
                    {
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {
                                "type": "object",
                                "properties": {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                                "required": ["code", "message"],
                            }
                        },
                    },
                    "An error",
                )
            },
            "schemas": _schemas(),
        },
    }
