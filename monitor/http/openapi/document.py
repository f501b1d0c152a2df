"""The OpenAPI document: the paths of the task API, their parameters, bodies and answers;
the component schemas come from ``schemas``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from monitor import __version__
from monitor.http.api import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE
from monitor.http.openapi.schemas import TASK, TASK_ID_PATTERN, error_schemas, schemas
from monitor.http.task_view import STATUSES
from monitor.models import REGIONS
from monitor.taskspec import MAX_BULK, MAX_SDK_APP_ID

_ERROR = {"$ref": "#/components/responses/Error"}
_CONFLICT = {"$ref": "#/components/responses/Conflict"}
_TASK_PATH_PARAMS = [
    {
        "name": "sdk_app_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_SDK_APP_ID},
    },
    {
        "name": "task_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": TASK_ID_PATTERN},
    },
]
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR for status in statuses}


def _list_parameters() -> list[dict[str, Any]]:
    return [
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
        {"name": "region", "in": "query", "schema": {"type": "string", "enum": list(REGIONS)}},
        {"name": "account", "in": "query", "schema": {"type": "string"}},
        {
            "name": "label",
            "in": "query",
            "description": "name:value or name=value (the value may be empty); repeatable, "
            "every one must match",
            "schema": {
                "type": "array",
                "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*[:=]"},
            },
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


def openapi_document(accounts: Collection[str] | None = None) -> dict[str, Any]:
    """The document; ``accounts``, the configured ones, are what a registration may name (any
    string when None: a document for reading, not for a running daemon)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trtc-recording-monitor",
            "version": __version__,
            "description": "Register TRTC on-cloud recording tasks and read their state. "
            'Errors are {"error": {"code": ..., "message": ...}}. A request body is JSON '
            "(415 otherwise), limited in size (413).",
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
                    "description": "Registering a task again with the same values answers "
                    "200 and the task; with another region, account, labels or interval, 409 "
                    "naming the fields that differ (fields left out are not compared). An "
                    "array is registered in one transaction and answered item by item; one "
                    "invalid item refuses the whole array (422, error.items by index).",
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
                        "201": _json(TASK, "Registered"),
                        "200": _json(
                            {"oneOf": [TASK, {"$ref": "#/components/schemas/BulkResult"}]},
                            "Already registered: the registered task; or, for an array, "
                            "one result per item by index",
                        ),
                        "409": _CONFLICT,
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
                    "responses": {"200": _json(TASK, "The task"), **_errors(400, 404)},
                },
                "patch": {
                    "operationId": "updateTask",
                    "summary": "Change a task's labels and/or polling interval",
                    "description": "Stored first, then applied; a new interval takes effect "
                    "at once. 404 for an unknown task, 409 (code removed) for a removed one.",
                    "security": _SECURED,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TaskUpdate"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(TASK, "The task as it now is"),
                        **_errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
                    },
                },
                "delete": {
                    "operationId": "removeTask",
                    "summary": "Deregister a task (an expected stop: no exit alert)",
                    "security": _SECURED,
                    "responses": {
                        "200": _json(TASK, "Removed"),
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
                "Error": _json({"$ref": "#/components/schemas/Error"}, "An error"),
                "Conflict": _json(
                    {
                        "type": "object",
                        "required": ["error"],
                        "properties": {"error": {"$ref": "#/components/schemas/ConflictError"}},
                    },
                    "Registered with other values: the fields that differ and the task",
                ),
            },
            "schemas": schemas(accounts) | error_schemas(),
        },
    }
