"""REST API for tasks (SPEC section 10)."""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import json
import re
from typing import Any

from aiohttp import web

from monitor.http.errors import ApiError
from monitor.http.ports import HttpContext
from monitor.models import MAX_WALL_TIME, REGIONS, Source, Status, Task, TaskKey, Transition
from monitor.registry import TaskFilter
from monitor.taskspec import (
    LABEL_NAME_RE,
    MAX_BULK,
    TaskSpec,
    ValidationError,
    validate_sdk_app_id,
    validate_spec,
    validate_task_id,
)
from monitor.uploads import UploadFailure, UploadState

CONTEXT: web.AppKey[HttpContext] = web.AppKey("context", HttpContext)
DEFAULT_PAGE = 100

MAX_PAGE = 1000
MAX_OFFSET = 10**9
RECENT_TRANSITIONS = 20
# ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses, and a
# bounded length keeps int() away from its 4300-digit limit.
_UNSIGNED = re.compile(r"[0-9]{1,19}")
_INT64_MAX = 2**63 - 1


def iso(ts: float | None) -> str | None:
    # 0 is "unknown" (also what a stored time no date can show is read as): null, as is None.
    if ts is None or not 0 < ts <= MAX_WALL_TIME:
        return None
    return _iso(ts)


# Tasks registered together share their times: a bulk answer formats each once.
@functools.lru_cache(maxsize=1024)
def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def task_json(task: Task, *, full: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sdk_app_id": task.sdk_app_id,
        "task_id": task.task_id,
        "region": task.region,
        "account": task.account,
        "labels": task.labels,
        "interval_seconds": task.interval,
        "registered_at": iso(task.registered_at),
        "status": task.status.value,
        "status_since": iso(task.status_since),
        "health": {
            "consecutive_errors": task.consecutive_errors,
            "last_error_code": task.last_error_code,
            "last_error_at": iso(task.last_error_at),
            "last_success_at": iso(task.last_success_at),
            "last_request_id": task.last_request_id,
        },
        "storage_files": task.storage_files,
        "upload": upload_json(task.upload, full=full),
    }
    if full:
        body["last_response"] = task.last_response
        body["extra"] = task.extra
    return body


def _failure_json(f: UploadFailure) -> dict[str, Any]:
    return {**f.to_json(), "at": iso(f.at)}


def upload_json(upload: UploadState, *, full: bool = False) -> dict[str, Any]:
    """Where the task's files went (SPEC section 8); the files and every failure for one task."""
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
    if not _UNSIGNED.fullmatch(raw_app):
        raise ApiError(400, "sdk_app_id: must be a positive integer")
    try:
        sdk_app_id = validate_sdk_app_id(int(raw_app))
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
    if not _UNSIGNED.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ApiError(400, f"{name}: must be an integer from {minimum} to {maximum}")
    return int(raw)


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
        name, sep, value = item.partition(":")
        if not sep or not LABEL_NAME_RE.fullmatch(name):
            raise ApiError(400, "label: use label=name:value with a valid label name")
        labels[name] = value
    return TaskFilter(status, region, request.query.get("account"), labels)


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


async def create_task(request: web.Request) -> web.Response:
    require_token(request)
    body = await read_json(request)
    if isinstance(body, list):
        return await _create_many(request, body)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object, or an array of them")
    context = request.app[CONTEXT]
    try:
        spec = validate_spec(body, context.control.account_names())
    except ValidationError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    task, created = await context.writer.register(spec, Source.API)
    return web.json_response(task_json(task, full=True), status=201 if created else 200)


async def _create_many(request: web.Request, items: list[Any]) -> web.Response:
    """Up to ``MAX_BULK`` specs: the valid ones registered in one transaction, every item
    answered by its index (201 new, 200 already registered, 422 invalid)."""
    if not items:
        raise ApiError(400, "the array of tasks is empty")
    if len(items) > MAX_BULK:
        raise ApiError(413, f"at most {MAX_BULK} tasks in one request, got {len(items)}")
    context = request.app[CONTEXT]
    accounts = context.control.account_names()
    results: list[dict[str, Any]] = [{} for _ in items]
    specs: list[TaskSpec] = []
    where: list[int] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValidationError(f"[{index}]", "must be a JSON object")
            specs.append(validate_spec(item, accounts))
            where.append(index)
        except ValidationError as exc:
            results[index] = {
                "index": index,
                "status": 422,
                "error": {"code": "invalid", "message": str(exc)},
            }
    answers = await context.writer.register_many(specs, Source.API) if specs else []
    for index, (task, created) in zip(where, answers, strict=True):
        results[index] = {
            "index": index,
            "status": 201 if created else 200,
            "task": task_json(task),
        }
    counts = {"created": 0, "existing": 0, "invalid": 0}
    for result in results:
        counts[{201: "created", 200: "existing"}.get(result["status"], "invalid")] += 1
    return web.json_response({"results": results, **counts})


async def get_task(request: web.Request) -> web.Response:
    task = existing_task(request)
    body = task_json(task, full=True)
    recent = await request.app[CONTEXT].writer.transitions(task.key, limit=RECENT_TRANSITIONS)
    body["recent_transitions"] = [transition_json(t) for t in recent]
    return web.json_response(body)


async def delete_task(request: web.Request) -> web.Response:
    require_token(request)
    key = task_key(request)
    task = await request.app[CONTEXT].writer.remove(key)
    if task is None:
        raise ApiError(404, "no such task is registered")
    return web.json_response(task_json(task))


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
    app.router.add_get("/api/v1/tasks", list_tasks)
    app.router.add_post("/api/v1/tasks", create_task)
    app.router.add_get("/api/v1/tasks/{sdk_app_id}/{task_id}", get_task)
    app.router.add_delete("/api/v1/tasks/{sdk_app_id}/{task_id}", delete_task)
    app.router.add_get("/api/v1/tasks/{sdk_app_id}/{task_id}/transitions", task_transitions)
