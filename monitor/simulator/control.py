"""The control surface under /-/sim/ (JSON), and a small async client for it.

It lets a simulator in another process be driven and read: tasks, faults, settings and
arrival statistics. Task and fault bodies have the scenario file's shapes.

    GET    /-/sim/                  what is here, and the current settings
    GET    /-/sim/tasks             all tasks (?sdk_app_id=&task_id= for one)
    POST   /-/sim/tasks             add a task                      -> 201 {sdk_app_id, task_id}
    POST   /-/sim/tasks/exit        {sdk_app_id, task_id, leave_code?}: the recorder leaves now
    POST   /-/sim/tasks/end         {sdk_app_id, task_id}: the task vanishes now
    POST   /-/sim/tasks/upload      {sdk_app_id, task_id, upload keys}: how its upload goes
    GET    /-/sim/faults            active fault rules and how often each kind fired
    POST   /-/sim/faults            add a rule                      -> 201 {id}
    DELETE /-/sim/faults            remove every rule
    DELETE /-/sim/faults/{id}       remove one rule
    GET    /-/sim/stats             arrivals (?window=1&secret_id=&since=&until=)
    GET    /-/sim/arrivals          each arrival (?action=&since=&until=): time, task, code
    POST   /-/sim/stats/reset       forget arrivals and counters
    GET    /-/sim/settings          rate_limit, rate_window, ended_code, clock_skew,
                                    credential_lifetime, metadata_role, ...
    PATCH  /-/sim/settings          change any of them
    GET    /-/sim/credentials       temporary credentials issued (ids, kinds, expiry; no keys)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

# The client lives in its own module; re-exported here, where it was first defined.
from monitor.simulator.control_client import PREFIX
from monitor.simulator.control_client import ControlError as ControlError
from monitor.simulator.control_client import SimulatorControl as SimulatorControl
from monitor.simulator.protocol import ENDED_CODES, VERSION
from monitor.simulator.scenario import ScenarioError, parse_fault, parse_task, parse_upload

if TYPE_CHECKING:
    from monitor.simulator.server import Simulator


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json() if request.can_read_body else {}
    except ValueError:
        raise _BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("the body must be a JSON object")
    return data


def _int_field(data: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"{name}: must be an integer")
    return value


def _str_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{name}: must be a non-empty string")
    return value


def _float_query(request: web.Request, name: str, default: float | None) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _BadRequest(f"{name}: must be a number") from None
    if not math.isfinite(value):
        raise _BadRequest(f"{name}: must be a finite number")
    return value


def _settings(sim: Simulator) -> dict[str, Any]:
    return {
        "rate_limit": sim.rate_limit,
        "rate_window": sim.rate_window,
        "ended_code": sim.ended_code,
        "clock_skew": sim.clock_skew,
        "hour_length": sim.hour_length,
        "max_tasks_per_app": sim.max_tasks_per_app,
        "credential_lifetime": sim.issuer.lifetime,
        "metadata_role": sim.issuer.metadata_role,
    }


class _Handlers:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "simulator": "TRTC recording API",
                "version": VERSION,
                "settings": _settings(self.sim),
                "endpoints": sorted(
                    f"{route.method} {route.resource.canonical}"
                    for route in request.match_info.current_app.router.routes()
                    if route.resource is not None and route.method != "HEAD"
                ),
            }
        )

    async def tasks(self, request: web.Request) -> web.Response:
        if "task_id" in request.query:
            try:
                sdk_app_id = int(request.query.get("sdk_app_id", ""))
            except ValueError:
                raise _BadRequest("sdk_app_id: must be an integer") from None
            info = self.sim.task_info(sdk_app_id, request.query["task_id"])
            if info is None:
                raise _BadRequest("no such task", 404, "not_found")
            return web.json_response(info)
        return web.json_response({"tasks": self.sim.tasks_info()})

    async def add_task(self, request: web.Request) -> web.Response:
        try:
            spec = parse_task(await _body(request), source="task")
        except ScenarioError as exc:
            raise _BadRequest(str(exc)) from None
        try:
            task_id = self.sim.add_spec(spec)
        except ValueError as exc:
            raise _BadRequest(str(exc), 409, "conflict") from None
        return web.json_response({"sdk_app_id": spec.sdk_app_id, "task_id": task_id}, status=201)

    async def _change(self, request: web.Request, end: bool) -> web.Response:
        data = await _body(request)
        sdk_app_id = _int_field(data, "sdk_app_id")
        task_id = _str_field(data, "task_id")
        leave_code = _int_field(data, "leave_code", 3)
        try:
            if end:
                changed = self.sim.end_task(sdk_app_id, task_id, leave_code)
            else:
                changed = self.sim.exit_task(sdk_app_id, task_id, leave_code)
        except KeyError:
            raise _BadRequest("no such task", 404, "not_found") from None
        return web.json_response(
            {"changed": changed, "task": self.sim.task_info(sdk_app_id, task_id)}
        )

    async def exit_task(self, request: web.Request) -> web.Response:
        return await self._change(request, end=False)

    async def end_task(self, request: web.Request) -> web.Response:
        return await self._change(request, end=True)

    async def set_upload(self, request: web.Request) -> web.Response:
        data = await _body(request)
        sdk_app_id = _int_field(data, "sdk_app_id")
        task_id = _str_field(data, "task_id")
        info = self.sim.task_info(sdk_app_id, task_id)
        if info is None:
            raise _BadRequest("no such task", 404, "not_found")
        keys = {k: v for k, v in data.items() if k not in ("sdk_app_id", "task_id")}
        try:
            upload = parse_upload(keys, vod=info["storage"] == "vod")
        except ScenarioError as exc:
            raise _BadRequest(str(exc)) from None
        self.sim.set_upload(sdk_app_id, task_id, upload)
        return web.json_response({"task": self.sim.task_info(sdk_app_id, task_id)})

    async def faults(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"faults": self.sim.faults.describe(), "fired": dict(self.sim.faults.fired)}
        )

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = parse_fault(await _body(request), source="fault")
        except ScenarioError as exc:
            raise _BadRequest(str(exc)) from None
        return web.json_response({"id": self.sim.faults.add(fault)}, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim.faults.clear()
        return web.json_response({"faults": []})

    async def remove_fault(self, request: web.Request) -> web.Response:
        try:
            fault_id = int(request.match_info["id"])
        except ValueError:
            raise _BadRequest("id: must be an integer") from None
        if not self.sim.faults.remove(fault_id):
            raise _BadRequest("no such fault", 404, "not_found")
        return web.json_response({"removed": fault_id})

    async def stats(self, request: web.Request) -> web.Response:
        window = _float_query(request, "window", 1.0)
        if window is None or window <= 0:
            raise _BadRequest("window: must be a positive number")
        return web.json_response(
            self.sim.stats(
                window=window,
                secret_id=request.query.get("secret_id") or None,
                since=_float_query(request, "since", None),
                until=_float_query(request, "until", None),
            )
        )

    async def arrivals(self, request: web.Request) -> web.Response:
        """Each arrival in the log: who polled which task when, e.g. to find a task polled by
        two replicas at once."""
        since = _float_query(request, "since", None)
        until = _float_query(request, "until", None)
        action = request.query.get("action") or None
        return web.json_response(
            {
                "arrivals": [
                    {
                        "mono": a.mono,
                        "wall": a.wall,
                        "action": a.action,
                        "region": a.region,
                        "task_id": a.task_id,
                        "code": a.code,
                    }
                    for a in self.sim.arrivals.select(action, None, since, until)
                ]
            }
        )

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.sim.reset_stats()
        return web.json_response({"reset": True})

    async def settings(self, request: web.Request) -> web.Response:
        return web.json_response(_settings(self.sim))

    async def patch_settings(self, request: web.Request) -> web.Response:
        data = await _body(request)
        unknown = sorted(set(data) - set(_settings(self.sim)))
        if unknown:
            raise _BadRequest(f"{unknown[0]}: unknown setting")
        # validate everything before changing anything
        changes: dict[str, Any] = {}
        if "rate_limit" in data:
            changes["rate_limit"] = _int_field(data, "rate_limit")
            if changes["rate_limit"] < 1:
                raise _BadRequest("rate_limit: must be at least 1")
        for name in ("rate_window", "hour_length", "clock_skew"):
            if name in data:
                value = data[name]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise _BadRequest(f"{name}: must be a number of seconds")
                if not math.isfinite(value) or (name != "clock_skew" and value <= 0):
                    raise _BadRequest(f"{name}: out of range")
                changes[name] = float(value)
        if "ended_code" in data:
            if data["ended_code"] not in ENDED_CODES:
                raise _BadRequest(f"ended_code: must be one of {', '.join(ENDED_CODES)}")
            changes["ended_code"] = data["ended_code"]
        if "max_tasks_per_app" in data:
            value = data["max_tasks_per_app"]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise _BadRequest("max_tasks_per_app: must be a positive integer or null")
            changes["max_tasks_per_app"] = value
        if "credential_lifetime" in data:
            value = data["credential_lifetime"]
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise _BadRequest("credential_lifetime: must be a positive number or null")
            changes["credential_lifetime"] = None if value is None else float(value)
        if "metadata_role" in data:
            value = data["metadata_role"]
            if value is not None and (not isinstance(value, str) or not value.isprintable()):
                raise _BadRequest("metadata_role: must be a role name or null")
            changes["metadata_role"] = value or None
        for name, value in changes.items():
            if name == "credential_lifetime":
                self.sim.issuer.lifetime = value
            elif name == "metadata_role":
                self.sim.issuer.metadata_role = value
            else:
                setattr(self.sim, name, value)
        return web.json_response(_settings(self.sim))

    async def credentials(self, request: web.Request) -> web.Response:
        issuer = self.sim.issuer
        return web.json_response(
            {
                **issuer.settings(),
                "credentials": [c.public() for c in issuer.history[-1000:]],
            }
        )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _BadRequest as exc:
        return _error(exc.status, exc.code, str(exc))


def add_control_routes(app: web.Application, sim: Simulator) -> None:
    """Mount the control surface on ``app`` (the simulator's own application)."""
    h = _Handlers(sim)
    sub = web.Application(middlewares=[_errors])
    sub.router.add_get("/", h.index)
    sub.router.add_get("/tasks", h.tasks)
    sub.router.add_post("/tasks", h.add_task)
    sub.router.add_post("/tasks/exit", h.exit_task)
    sub.router.add_post("/tasks/end", h.end_task)
    sub.router.add_post("/tasks/upload", h.set_upload)
    sub.router.add_get("/faults", h.faults)
    sub.router.add_post("/faults", h.add_fault)
    sub.router.add_delete("/faults", h.clear_faults)
    sub.router.add_delete("/faults/{id}", h.remove_fault)
    sub.router.add_get("/stats", h.stats)
    sub.router.add_post("/stats/reset", h.reset_stats)
    sub.router.add_get("/arrivals", h.arrivals)
    sub.router.add_get("/settings", h.settings)
    sub.router.add_patch("/settings", h.patch_settings)
    sub.router.add_get("/credentials", h.credentials)
    app.add_subapp(PREFIX, sub)
