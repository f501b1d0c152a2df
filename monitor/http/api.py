"""REST API for tasks (docs/http-api.md)."""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from aiohttp import web

from monitor.http.errors import ApiError
from monitor.http.ports import HttpContext
from monitor.http.task_view import iso as iso  # also for the alerts list (server.py)
from monitor.http.task_view import task_json
from monitor.models import REGIONS, Source, Status, Task, TaskKey, Transition
from monitor.registry import TaskFilter
from monitor.taskspec import (
    MAX_BULK,
    TaskSpec,
    ValidationError,
    conflicting_fields,
    validate_api_spec,
    validate_sdk_app_id,
    validate_task_id,
    validate_update,
)

CONTEXT: web.AppKey[HttpContext] = web.AppKey("context", HttpContext)
DEFAULT_PAGE = 100

MAX_PAGE = 1000
MAX_OFFSET = 10**9
RECENT_TRANSITIONS = 20
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
# bounded length keeps int() away from its 4300-digit limit.
# "42.0" is the integer 42 as some clients write numbers (JSON Schema agrees).
_UNSIGNED = re.compile(r"([0-9]{1,19})(?:\.0{1,20})?")


# The API's routes, declared at their handlers.
routes = web.RouteTableDef()
_TASK = "/api/v1/tasks/{sdk_app_id}/{task_id}"


def _unsigned(raw: str) -> int | None:
    match = _UNSIGNED.fullmatch(raw)
    return None if match is None else int(match[1])


_INT64_MAX = 2**63 - 1
# A label filter: a label name, then ":" or "=" (neither can be part of a name), then the value.
LABEL_FILTER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)[:=](.*)", re.DOTALL)


def transition_json(t: Transition) -> dict[str, Any]:
    return {
        "seq": t.seq,
        "from": t.from_status.value,
        "to": t.to_status.value,
        "at": iso(t.at),
        "source": t.source.value,
        "request_id": t.request_id,
        "detail": t.detail,
    }


def _utf8(text: str) -> bytes:
    # Header values and environment values may carry undecodable bytes as surrogates.
    return text.encode("utf-8", "surrogateescape")


def require_token(request: web.Request) -> None:
    """Bearer token, compared in constant time; mutating calls need one configured."""
    expected = request.app[CONTEXT].control.api_token()
    if not expected:
        raise ApiError(
            403,
            "mutating calls are disabled: set server.api_token_file or server.api_token_env "
            "in the configuration",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(_utf8(given.strip()), _utf8(expected)):
        raise ApiError(
            401,
            "missing or wrong bearer token (send Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="trtc-monitor"'},
        )


def task_key(request: web.Request) -> TaskKey:
    raw_app = request.match_info["sdk_app_id"]
    number = _unsigned(raw_app)
    if number is None:
        raise ApiError(400, "sdk_app_id: must be a positive integer")
    try:
        sdk_app_id = validate_sdk_app_id(number)
        task_id = validate_task_id(request.match_info["task_id"])
    except ValidationError as exc:
        raise ApiError(400, str(exc)) from None
    return TaskKey(sdk_app_id, task_id)


def existing_task(request: web.Request) -> Task:
    task = request.app[CONTEXT].tasks.get(task_key(request))
    if task is None:
        raise ApiError(404, "no such task is registered")
    return task


def _json_int(literal: str) -> int | float:
    """Integers beyond 64 bits fit no field: read them as floats, which validation refuses
    by field name, instead of handing giant ints to arithmetic that may overflow."""
    digits = literal.lstrip("-")
    if len(digits) <= 19:
        value = int(literal)
        if -_INT64_MAX - 1 <= value <= _INT64_MAX:
            return value
    return float(literal)


def _json_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: web.Request) -> Any:
    ctype = request.content_type
    # aiohttp reports a missing Content-Type as application/octet-stream.
    if ctype not in ("application/json", "application/octet-stream", ""):
        raise ApiError(415, "send a JSON body with Content-Type: application/json")
    raw = await request.read()
    try:
        return json.loads(raw, parse_int=_json_int, parse_constant=_json_constant)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (e.g. "[[[[..." * 100000).
        raise ApiError(400, "body is not valid JSON", "malformed_json") from None


def _int_param(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    number = _unsigned(raw)
    if number is None or not minimum <= number <= maximum:
        raise ApiError(400, f"{name}: must be an integer from {minimum} to {maximum}")
    return number


def parse_filter(request: web.Request) -> TaskFilter:
    status: Status | None = None
    if "status" in request.query:
        try:
            status = Status(request.query["status"])
        except ValueError:
            raise ApiError(
                400, f"status: must be one of {', '.join(s.value for s in Status)}"
            ) from None
    region = request.query.get("region")
    if region is not None and region not in REGIONS:
        raise ApiError(400, f"region: must be one of {', '.join(REGIONS)}")
    labels: dict[str, str] = {}
    for item in request.query.getall("label", []):
        match = LABEL_FILTER_RE.fullmatch(item)
        if match is None:
            raise ApiError(
                400, "label: use label=name:value (or name=value) with a valid label name"
            )
        labels[match[1]] = match[2]
    return TaskFilter(status, region, request.query.get("account"), labels)


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    flt = parse_filter(request)
    # limit 0 would answer next_offset == offset forever: a client paging on would never stop.
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 0, MAX_OFFSET)
    matched = request.app[CONTEXT].tasks.find(flt)
    page = matched[offset : offset + limit]
    next_offset = offset + limit if offset + limit < len(matched) else None
    return web.json_response(
        {"tasks": [task_json(t) for t in page], "total": len(matched), "next_offset": next_offset}
    )


def _conflict(spec: TaskSpec, fields: list[str], task: Task) -> tuple[str, dict[str, Any]]:
    """The message and details of a registration that differs from the registered task."""
    message = (
        f"task {spec.sdk_app_id}/{spec.task_id} is already registered with other values for "
        f"{', '.join(fields)}; change labels or interval with PATCH, or remove the task and "
        "register it again"
    )
    return message, {"fields": fields, "task": task_json(task)}


@routes.post("/api/v1/tasks")
async def create_task(request: web.Request) -> web.Response:
    require_token(request)
    body = await read_json(request)
    if isinstance(body, list):
        return await _create_many(request, body)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object, or an array of them")
    context = request.app[CONTEXT]
    try:
        spec = validate_api_spec(body, context.control.account_names())
    except ValidationError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    task, created = await context.writer.register(spec, Source.API)
    if not created:
        # Registering again is idempotent only with the same values: others would be dropped.
        fields = conflicting_fields(spec, body, task)
        if fields:
            message, details = _conflict(spec, fields, task)
            raise ApiError(409, message, "conflict", details=details)
    return web.json_response(task_json(task, full=True), status=201 if created else 200)


async def _create_many(request: web.Request, items: list[Any]) -> web.Response:
    """Up to ``MAX_BULK`` specs registered in one transaction, every item answered by its index
    (201 new, 200 already registered, 409 registered with other values). One invalid item
    refuses the whole array (422, the problems by index) and registers nothing."""
    if not items:
        raise ApiError(400, "the array of tasks is empty")
    if len(items) > MAX_BULK:
        # A count, not a size: a validation error like any other (413 is for the body's bytes).
        raise ApiError(422, f"at most {MAX_BULK} tasks in one request, got {len(items)}")
    context = request.app[CONTEXT]
    accounts = context.control.account_names()
    specs: list[TaskSpec] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"[{index}]", "must be a JSON object")
            specs.append(validate_api_spec(item, accounts))
        except ValidationError as exc:
            problems.append({"index": index, "code": "invalid", "message": str(exc)})
    if problems:
        first = problems[0]
        raise ApiError(
            422,
            f"{len(problems)} of {len(items)} tasks are invalid, nothing was registered; "
            f"first: [{first['index']}] {first['message']}",
            "invalid",
            details={"items": problems},
        )
    answers = await context.writer.register_many(specs, Source.API)
    results: list[dict[str, Any]] = []
    counts = {"created": 0, "existing": 0, "conflicts": 0, "invalid": 0}
    for index, (spec, item, (task, created)) in enumerate(zip(specs, items, answers, strict=True)):
        fields = [] if created else conflicting_fields(spec, item, task)
        if fields:
            message, details = _conflict(spec, fields, task)
            results.append(
                {
                    "index": index,
                    "status": 409,
                    "error": {"code": "conflict", "message": message, "fields": fields},
                    "task": details["task"],
                }
            )
            counts["conflicts"] += 1
        else:
            results.append(
                {"index": index, "status": 201 if created else 200, "task": task_json(task)}
            )
            counts["created" if created else "existing"] += 1
    return web.json_response({"results": results, **counts})


@routes.get(_TASK)
async def get_task(request: web.Request) -> web.Response:
    task = existing_task(request)
    body = task_json(task, full=True)
    recent = await request.app[CONTEXT].writer.transitions(task.key, limit=RECENT_TRANSITIONS)
    body["recent_transitions"] = [transition_json(t) for t in recent]
    return web.json_response(body)


@routes.delete(_TASK)
async def delete_task(request: web.Request) -> web.Response:
    require_token(request)
    key = task_key(request)
    task = await request.app[CONTEXT].writer.remove(key)
    if task is None:
        raise ApiError(404, "no such task is registered")
    return web.json_response(task_json(task))


@routes.patch(_TASK)
async def update_task(request: web.Request) -> web.Response:
    """Change labels (the whole set) and/or the interval (null: back to the configured one);
    the poll schedule follows a new interval at once."""
    require_token(request)
    key = task_key(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object with labels and/or interval")
    try:
        update = validate_update(body)
    except ValidationError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    task = await request.app[CONTEXT].writer.update_task(key, update)
    if task is None:
        raise ApiError(404, "no such task is registered")
    if task.status is Status.REMOVED:
        raise ApiError(
            409,
            "the task was removed; register it again to monitor it (its history stays until "
            "retention purges it)",
            "removed",
        )
    return web.json_response(task_json(task, full=True))


@routes.get(f"{_TASK}/transitions")
async def task_transitions(request: web.Request) -> web.Response:
    task = existing_task(request)
    history = await request.app[CONTEXT].writer.transitions(task.key)
    return web.json_response(
        {
            "sdk_app_id": task.sdk_app_id,
            "task_id": task.task_id,
            "transitions": [transition_json(t) for t in history],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)
