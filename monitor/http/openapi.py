"""OpenAPI 3 description of the task API, built from one table of operations."""

from __future__ import annotations

from typing import Any

from monitor import __version__
from monitor.models import REGIONS, Status

_ERROR = {"$ref": "#/components/responses/Error"}
_TASK_PATH_PARAMS = [
    {"name": "sdk_app_id", "in": "path", "required": True, "schema": {"type": "integer"}},
    {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    ref = {
        "Task": {"$ref": "#/components/schemas/Task"},
        "Transition": {"$ref": "#/components/schemas/Transition"},
    }
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "trtc-recording-monitor",
            "version": __version__,
            "description": "Register TRTC on-cloud recording tasks and read their state.",
        },
        "paths": {
            "/api/v1/tasks": {
                "get": {
                    "summary": "List tasks",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": [s.value for s in Status]},
                        },
                        {
                            "name": "region",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(REGIONS)},
                        },
                        {"name": "account", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "label",
                            "in": "query",
                            "description": "name:value; repeatable",
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                        },
                        {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "tasks": {"type": "array", "items": ref["Task"]},
                                    "total": {"type": "integer"},
                                    "next_offset": {"type": "integer", "nullable": True},
                                },
                            },
                            "A page of tasks",
                        ),
                        "400": _ERROR,
                    },
                },
                "post": {
                    "summary": "Register a task (idempotent)",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Registration"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json(ref["Task"], "Registered"),
                        "200": _json(ref["Task"], "Already registered"),
                        "400": _ERROR,
                        "401": _ERROR,
                        "403": _ERROR,
                        "413": _ERROR,
                        "415": _ERROR,
                        "422": _ERROR,
                    },
                },
            },
            "/api/v1/tasks/{sdk_app_id}/{task_id}": {
                "parameters": _TASK_PATH_PARAMS,
                "get": {
                    "summary": "One task with its recent transitions",
                    "responses": {
                        "200": _json(ref["Task"], "The task"),
                        "400": _ERROR,
                        "404": _ERROR,
                    },
                },
                "delete": {
                    "summary": "Deregister a task (an expected stop: no exit alert)",
                    "security": secured,
                    "responses": {
                        "200": _json(ref["Task"], "Removed"),
                        "400": _ERROR,
                        "401": _ERROR,
                        "403": _ERROR,
                        "404": _ERROR,
                    },
                },
            },
            "/api/v1/tasks/{sdk_app_id}/{task_id}/transitions": {
                "parameters": _TASK_PATH_PARAMS,
                "get": {
                    "summary": "Full transition history",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "transitions": {"type": "array", "items": ref["Transition"]}
                                },
                            },
                            "History, newest first",
                        ),
                        "404": _ERROR,
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
            "schemas": {
                "Registration": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["sdk_app_id", "task_id", "region"],
                    "properties": {
                        "sdk_app_id": {"type": "integer", "minimum": 1},
                        "task_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "region": {"type": "string", "enum": list(REGIONS)},
                        "account": {"type": "string"},
                        "labels": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "maxLength": 256},
                        },
                        "interval": {
                            "oneOf": [{"type": "string"}, {"type": "number"}],
                            "description": "Duration such as 10s, or seconds",
                        },
                    },
                },
                "Task": {
                    "type": "object",
                    "properties": {
                        "sdk_app_id": {"type": "integer"},
                        "task_id": {"type": "string"},
                        "region": {"type": "string"},
                        "account": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "status": {"type": "string", "enum": [s.value for s in Status]},
                        "status_since": {"type": "string", "format": "date-time"},
                        "registered_at": {"type": "string", "format": "date-time"},
                        "health": {"type": "object"},
                        "storage_files": {"type": "integer", "nullable": True},
                        "recent_transitions": {"type": "array", "items": ref["Transition"]},
                    },
                },
                "Transition": {
                    "type": "object",
                    "properties": {
                        "seq": {"type": "integer"},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "at": {"type": "string", "format": "date-time"},
                        "source": {"type": "string", "enum": ["poll", "callback", "api"]},
                        "request_id": {"type": "string", "nullable": True},
                        "detail": {"type": "object"},
                    },
                },
            },
        },
    }
