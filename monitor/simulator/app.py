"""The simulator: an aiohttp server speaking the TRTC recording API (Version 2019-07-22).

Request path: record the arrival and count it -> injected faults -> action and version ->
TC3 verification -> strict rate limit -> region -> parameters -> the action on the task table.
Answers are always HTTP 200 with ``Content-Type: application/json`` and the ``Response``
envelope, except when a fault is injected that breaks exactly that.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import heapq
import itertools
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from monitor.models import Status
from monitor.simulator.arrivals import Arrival, ArrivalLog, SlidingWindowCounter
from monitor.simulator.callbacks import CallbackSender, CallbackSettings, build_body
from monitor.simulator.clock import Clock, SystemClock
from monitor.simulator.control import add_control_routes
from monitor.simulator.faults import Fault, FaultInjector, FaultKind
from monitor.simulator.lifecycle import (
    LEAVE_API,
    LEAVE_KICKED_BY_SERVER,
    Life,
    LifeRange,
    Phase,
    PlannedEvent,
    SimTask,
    UploadPlan,
    check_upload,
)
from monitor.simulator.metadata import add_metadata_routes
from monitor.simulator.protocol import (
    CONTENT_TYPE,
    CREATE,
    DEFAULT_ENDED_CODE,
    DELETE,
    DESCRIBE,
    ENDED_CODES,
    MODIFY,
    ApiError,
    SignedRequest,
    check_common,
    check_region,
    check_task_ref,
    decode_params,
    envelope,
    error_envelope,
    message_for,
    parse_create,
    request_id,
    throttle_message,
    verify,
)
from monitor.simulator.scenario import Scenario, load_scenario
from monitor.simulator.sts import STS_ACTIONS, CredentialIssuer, answer_sts
from monitor.trtc.signing import parse_authorization

# A well-known pair for the standalone simulator and the demo; it protects nothing.
DEFAULT_SECRET_ID = "AKIDSIMULATOR"  # noqa: S105 - a public demo value
DEFAULT_SECRET_KEY = "simulator-secret-key"  # noqa: S105 - a public demo value

_HTML_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_EVENT_TICK = 0.02  # how often due callback events are looked for, at most

Payload = dict[str, Any]
TaskKey = tuple[int, str]


def _html_error(status: int) -> str:
    reason = _HTML_ERRORS.get(status, "Error")
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>stgw</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def _malformed_body(kind: str, rid: str) -> bytes:
    if kind == "no_response":
        return f'{{"RequestId": "{rid}", "Status": "InProgress"}}'.encode()
    if kind == "truncated":
        return f'{{"Response": {{"TaskId": "task-", "RequestId": "{rid}'.encode()
    return _html_error(502).encode()


class Simulator:
    """A local TRTC recording API.

    ``credentials`` maps SecretId -> SecretKey (default: the built-in demo pair); ``tokens``
    maps SecretId -> the X-TC-Token it must present. Times are seconds of ``clock``;
    ``clock_skew`` shifts the server's wall clock used to judge request timestamps.
    ``hour_length`` is how long one ResourceExpiredHour lasts (3600 s for real).
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        rate_limit: int = 20,
        rate_window: float = 1.0,
        ended_code: str = DEFAULT_ENDED_CODE,
        clock: Clock | None = None,
        seed: int | None = None,
        random_life: LifeRange | None = None,
        hour_length: float = 3600.0,
        max_tasks_per_app: int | None = 100,
        callback: CallbackSettings | None = None,
        faults: Iterable[Fault] = (),
        clock_skew: float = 0.0,
        arrival_log_size: int = 200_000,
        credential_lifetime: float | None = None,
        metadata_role: str | None = None,
    ) -> None:
        if rate_limit < 1:
            raise ValueError("rate_limit must be at least 1")
        if ended_code not in ENDED_CODES:
            raise ValueError(f"ended_code must be one of {', '.join(ENDED_CODES)}")
        self.credentials: dict[str, str] = (
            dict(credentials)
            if credentials is not None
            else {DEFAULT_SECRET_ID: DEFAULT_SECRET_KEY}
        )
        self.tokens: dict[str, str] = dict(tokens or {})
        # Temporary credentials from STS and the metadata service (sts.py), accepted beside
        # the permanent ones until they expire.
        self.issuer = CredentialIssuer(lifetime=credential_lifetime, metadata_role=metadata_role)
        self.rate_limit = rate_limit
        self._counter = SlidingWindowCounter(rate_window)
        self.ended_code = ended_code
        self.clock: Clock = clock or SystemClock()
        self.clock_skew = clock_skew
        self._rng = random.Random(seed)
        self.random_life = random_life or LifeRange()
        self.hour_length = hour_length
        self.max_tasks_per_app = max_tasks_per_app
        self.faults = FaultInjector(random.Random(self._rng.random()))
        self.faults.extend(faults)
        self.arrivals = ArrivalLog(arrival_log_size)
        self._tasks: dict[TaskKey, SimTask] = {}
        self._callback = callback
        self._sender = CallbackSender(callback) if callback is not None else None
        self._events: list[tuple[float, int, TaskKey]] = []
        self._seq = itertools.count()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._stopping: asyncio.Event | None = None
        self._event_loop_task: asyncio.Task[None] | None = None
        self._actions: dict[str, Callable[[Payload, float], Payload | ApiError]] = {
            CREATE: self._create,
            DESCRIBE: self._describe,
            DELETE: self._delete,
            MODIFY: self._modify,
        }

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, clock: Clock | None = None) -> Simulator:
        """A simulator configured by a scenario, its tasks already added."""
        credentials = {c.secret_id: c.secret_key for c in scenario.credentials} or None
        tokens = {c.secret_id: c.token for c in scenario.credentials if c.token is not None}
        sim = cls(
            credentials=credentials,
            tokens=tokens,
            rate_limit=scenario.rate_limit,
            rate_window=scenario.rate_window,
            ended_code=scenario.ended_code,
            clock=clock,
            seed=scenario.seed,
            random_life=scenario.random_life,
            hour_length=scenario.hour_length,
            max_tasks_per_app=scenario.max_tasks_per_app,
            callback=scenario.callback,
            faults=scenario.faults,
            clock_skew=scenario.clock_skew,
        )
        for spec in scenario.tasks:
            sim.add_task(
                spec.sdk_app_id,
                spec.task_id,
                spec.life,
                room_id=spec.room_id,
                user_id=spec.user_id,
                max_idle_time=spec.max_idle_time,
                expire_after=spec.expire_after,
                vod=spec.vod,
                upload=spec.upload,
            )
        return sim

    # ----------------------------------------------------------------- settings

    @property
    def _all_keys(self) -> collections.ChainMap[str, str]:
        # Built per request: tests replace ``credentials`` and ``tokens`` wholesale.
        return collections.ChainMap(self.credentials, self.issuer.keys)

    @property
    def _all_tokens(self) -> collections.ChainMap[str, str]:
        return collections.ChainMap(self.tokens, self.issuer.tokens)

    @property
    def rate_window(self) -> float:
        return self._counter.window

    @rate_window.setter
    def rate_window(self, value: float) -> None:
        self._counter = SlidingWindowCounter(value)

    @property
    def callback(self) -> CallbackSettings | None:
        return self._callback

    @property
    def callback_stats(self) -> dict[str, int]:
        return self._sender.stats.to_dict() if self._sender is not None else {}

    # ----------------------------------------------------------------- server

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    @property
    def running(self) -> bool:
        return self._runner is not None

    def make_app(self) -> web.Application:
        """The aiohttp application: the API on POST / and the control surface under /-/sim/."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/", self._handle)
        add_metadata_routes(app, self)
        add_control_routes(app, self)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping = asyncio.Event()
        # shutdown waits for handlers; held requests end promptly once _stopping is set
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{bound_port}"
        if self._sender is not None:
            await self._sender.start()
            self._event_loop_task = asyncio.create_task(self._run_events(), name="sim-events")
        return self._url

    async def stop(self) -> None:
        """Stop listening, end held requests and callback deliveries. Idempotent."""
        if self._stopping is not None:
            self._stopping.set()
        if self._event_loop_task is not None:
            self._event_loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._event_loop_task
            self._event_loop_task = None
        if self._sender is not None:
            await self._sender.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._url = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drain_callbacks(self) -> None:
        """Wait until every callback due so far had its first delivery attempt."""
        self.run_due_events()
        if self._sender is not None:
            await self._sender.drain()

    async def pause(self, seconds: float) -> None:
        """Hold a request for ``seconds`` (injected latency), ending early on stop."""
        await self._pause(seconds)

    def drop(self, request: web.Request) -> web.StreamResponse:
        """End the connection without an answer."""
        return self._drop(request)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        stopping = self._stopping
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    # ----------------------------------------------------------------- the API

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        clock = self.clock
        mono = clock.monotonic()
        wall = clock.time()
        body = await request.read()
        headers = request.headers
        action = sys.intern(headers.get("X-TC-Action", ""))
        region = sys.intern(headers.get("X-TC-Region", ""))
        auth = parse_authorization(headers.get("Authorization", ""))
        secret_id = sys.intern(auth.secret_id) if auth is not None else ""
        params = decode_params(body)
        raw_task = params.get("TaskId") if params is not None else None
        task_id = raw_task if isinstance(raw_task, str) else ""
        arrival = self.arrivals.record(Arrival(mono, wall, secret_id, action, region, task_id))
        count = self._counter.hit((secret_id, action), mono)

        decision = self.faults.decide(action, task_id)
        if decision.delayed_by:
            arrival.fault = FaultKind.LATENCY.value
            await self._pause(decision.delay)
        if decision.fault is not None:
            arrival.fault = decision.fault.kind.value
            return await self._act_out(request, decision.fault, arrival, count)

        rid = request_id()
        signed = SignedRequest(
            auth=auth,
            timestamp=headers.get("X-TC-Timestamp", ""),
            host=headers.get("Host", ""),
            content_type=headers.get("Content-Type", ""),
            body=body,
            token=headers.get("X-TC-Token", ""),
        )
        if action in STS_ACTIONS:
            answer, issued = answer_sts(
                action,
                headers.get("X-TC-Version", ""),
                signed,
                params,
                self.issuer,
                self._all_keys,
                self._all_tokens,
                wall + self.clock_skew,
                mono,
            )
            if issued is not None:
                issued.answered_mono = clock.monotonic()
            if isinstance(answer, ApiError):
                arrival.code = answer.code
                return self._json(error_envelope(answer, rid))
            return self._json(envelope(answer, rid))
        result = self._answer(
            action, headers.get("X-TC-Version", ""), region, signed, params, wall, count
        )
        if isinstance(result, ApiError):
            arrival.code = result.code
            return self._json(error_envelope(result, rid))
        return self._json(envelope(result, rid))

    def _answer(
        self,
        action: str,
        version: str,
        region: str,
        signed: SignedRequest,
        params: Payload | None,
        wall: float,
        count: int,
    ) -> Payload | ApiError:
        err = check_common(action, version)
        if err is not None:
            return err
        now = wall + self.clock_skew
        err = verify(signed, self._all_keys, self._all_tokens, now)
        if err is not None:
            return err
        if signed.auth is not None and self.issuer.expired(signed.auth.secret_id, now):
            return ApiError.of("AuthFailure.TokenFailure")
        if count > self.rate_limit:
            self.arrivals.limited += 1
            return ApiError("RequestLimitExceeded", throttle_message(count, self.rate_limit))
        err = check_region(region)
        if err is not None:
            return err
        if params is None:
            return ApiError("InvalidParameter", "The request body is not a JSON object.")
        return self._actions[action](params, self.clock.monotonic())

    @staticmethod
    def _json(body: bytes) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _act_out(
        self, request: web.Request, fault: Fault, arrival: Arrival, count: int
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind is FaultKind.TIMEOUT:
            arrival.code = "!timeout"
            await self._pause(fault.hold)
            return self._drop(request)
        if kind is FaultKind.DROP:
            arrival.code = "!drop"
            return self._drop(request)
        if kind is FaultKind.HTTP_ERROR:
            arrival.code = f"!http_{fault.status}"
            return web.Response(
                status=fault.status, text=_html_error(fault.status), content_type="text/html"
            )
        rid = request_id()
        if kind is FaultKind.MALFORMED:
            arrival.code = "!malformed"
            return self._json(_malformed_body(fault.body, rid))
        code = fault.error_code
        if kind is FaultKind.THROTTLE:
            message = fault.message or throttle_message(
                max(count, self.rate_limit + 1), self.rate_limit
            )
        else:
            message = fault.message or message_for(code)
        arrival.code = code
        return self._json(error_envelope(ApiError(code, message), rid))

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        # Closing the transport first makes aiohttp's write of the response fail quietly, so
        # the client sees the connection end with no answer at all.
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    # ----------------------------------------------------------------- actions

    def _visible(self, params: Payload, now: float) -> SimTask | None:
        task = self._tasks.get((params["SdkAppId"], params["TaskId"]))
        if task is None or not task.visible(now):
            return None
        return task

    def _ended(self) -> ApiError:
        return ApiError.of(self.ended_code)

    def _describe(self, params: Payload, now: float) -> Payload | ApiError:
        err = check_task_ref(params)
        if err is not None:
            return err
        task = self._visible(params, now)
        if task is None:
            return self._ended()
        status = task.api_status(now)
        return {
            "TaskId": task.task_id,
            "Status": status.value if status is not None else None,
            "StorageFileList": task.storage_files(now),
        }

    def _delete(self, params: Payload, now: float) -> Payload | ApiError:
        err = check_task_ref(params)
        if err is not None:
            return err
        task = self._visible(params, now)
        if task is None:
            return self._ended()
        if task.stop(now, LEAVE_API):
            self._schedule(task)
            self.run_due_events()
        return {"TaskId": task.task_id}

    def _modify(self, params: Payload, now: float) -> Payload | ApiError:
        err = check_task_ref(params)
        if err is not None:
            return err
        task = self._visible(params, now)
        if task is None:
            return self._ended()
        task.modifications += 1
        return {"TaskId": task.task_id}

    def _create(self, params: Payload, now: float) -> Payload | ApiError:
        req = parse_create(params)
        if isinstance(req, ApiError):
            return req
        if self.max_tasks_per_app is not None:
            live = sum(
                1
                for (app_id, _), t in self._tasks.items()
                if app_id == req.sdk_app_id and t.phase(now) is not Phase.GONE
            )
            if live >= self.max_tasks_per_app:
                return ApiError.of("FailedOperation.RestrictedConcurrency")
        task_id = self.add_task(
            req.sdk_app_id,
            room_id=req.room_id,
            user_id=req.user_id,
            max_idle_time=req.max_idle_time,
            expire_after=req.resource_expired_hour * self.hour_length,
            vod=req.vod,
        )
        return {"TaskId": task_id}

    # ----------------------------------------------------------------- tasks

    def _new_task_id(self) -> str:
        # 288 random bits: collisions are not a practical concern
        return base64.urlsafe_b64encode(self._rng.randbytes(36)).decode()

    def add_task(
        self,
        sdk_app_id: int,
        task_id: str | None = None,
        life: Life | None = None,
        *,
        room_id: str | int | None = None,
        user_id: str | None = None,
        max_idle_time: float | None = None,
        expire_after: float | None = None,
        vod: bool = False,
        upload: UploadPlan | None = None,
    ) -> str:
        """Start a task now and return its TaskId.

        Without ``life``, one is drawn from ``random_life``. ``max_idle_time`` ends an idle
        task after that long with LeaveCode 99; ``expire_after`` (seconds) hides the task
        from the API after that long, as ResourceExpiredHour does, while its life goes on.
        """
        if task_id is None:
            task_id = self._new_task_id()
        key = (sdk_app_id, task_id)
        if key in self._tasks:
            raise ValueError(f"task {sdk_app_id}/{task_id} already exists")
        if life is None:
            life = self.random_life.draw(self._rng)
        task = SimTask.create(
            sdk_app_id,
            task_id,
            life,
            self.clock.monotonic(),
            self.clock.time(),
            room_id=room_id if room_id is not None else f"room-{len(self._tasks) + 1}",
            user_id=user_id if user_id is not None else f"recorder_{task_id[:16]}",
            max_idle_time=max_idle_time,
            expire_after=expire_after,
            vod=vod,
            upload=upload,
        )
        self._tasks[key] = task
        self._schedule(task)
        self.run_due_events()
        return task_id

    def _task(self, sdk_app_id: int, task_id: str) -> SimTask:
        task = self._tasks.get((sdk_app_id, task_id))
        if task is None:
            raise KeyError(f"no simulated task {sdk_app_id}/{task_id}")
        return task

    def exit_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the recorder leave now: Exited, then gone after the life's ``exited`` time.

        False when it had already exited; KeyError for a task never added.
        """
        task = self._task(sdk_app_id, task_id)
        changed = task.stop(self.clock.monotonic(), leave_code)
        if changed:
            self._schedule(task)
            self.run_due_events()
        return changed

    def end_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the task vanish now (the API answers the ended code from now on)."""
        task = self._task(sdk_app_id, task_id)
        changed = task.finish(self.clock.monotonic(), leave_code)
        if changed:
            self._schedule(task)
            self.run_due_events()
        return changed

    def set_upload(self, sdk_app_id: int, task_id: str, upload: UploadPlan) -> None:
        """Change how the task's upload goes, for the callbacks not yet sent (ValueError for a
        plan its storage cannot have, KeyError for a task never added)."""
        task = self._task(sdk_app_id, task_id)
        check_upload(upload, task.vod)
        task.upload = upload
        self._schedule(task)
        self.run_due_events()

    def task_status(self, sdk_app_id: int, task_id: str) -> Status | None:
        """What DescribeCloudRecording would report now; None when it answers an ended code."""
        task = self._tasks.get((sdk_app_id, task_id))
        return task.api_status(self.clock.monotonic()) if task is not None else None

    def task_info(self, sdk_app_id: int, task_id: str) -> dict[str, Any] | None:
        task = self._tasks.get((sdk_app_id, task_id))
        return task.info(self.clock.monotonic()) if task is not None else None

    def tasks_info(self) -> list[dict[str, Any]]:
        now = self.clock.monotonic()
        return [t.info(now) for t in self._tasks.values()]

    def phase_counts(self) -> dict[str, int]:
        now = self.clock.monotonic()
        counts = {p.name: 0 for p in Phase}
        for t in self._tasks.values():
            counts[t.phase(now).name] += 1
        return counts

    # ----------------------------------------------------------------- callbacks

    def _schedule(self, task: SimTask) -> None:
        if self._callback is None:
            return
        pending = task.events(self._callback.events)
        if pending:
            at = min(e.at for e in pending)
            heapq.heappush(self._events, (at, next(self._seq), (task.sdk_app_id, task.task_id)))

    def run_due_events(self) -> int:
        """Queue every callback whose time has come; returns how many. Runs by itself while
        started; call it directly only with a manual clock."""
        if self._callback is None or self._sender is None:
            return 0
        enabled = self._callback.events
        now = self.clock.monotonic()
        sent = 0
        while self._events and self._events[0][0] <= now:
            _, _, key = heapq.heappop(self._events)
            task = self._tasks.get(key)
            if task is None:
                continue
            for event in task.events(enabled):  # in time order
                if event.at > now:
                    break
                task.sent.add(event.key)
                self._sender.enqueue(task.sdk_app_id, self._callback_body(task, event))
                sent += 1
            self._schedule(task)
        return sent

    def _callback_body(self, task: SimTask, event: PlannedEvent) -> bytes:
        return build_body(
            event.event_type,
            room_id=task.room_id,
            user_id=task.user_id,
            task_id=task.task_id,
            payload=event.payload,
            event_wall=task.wall(event.at),
            callback_wall=self.clock.time(),
        )

    async def _run_events(self) -> None:
        while True:
            self.run_due_events()
            delay = _EVENT_TICK
            if self._events:
                delay = min(delay, max(0.0, self._events[0][0] - self.clock.monotonic()))
            await asyncio.sleep(delay)

    # ----------------------------------------------------------------- statistics

    def max_in_window(self, action: str, window: float = 1.0, secret_id: str | None = None) -> int:
        """Most arrivals of ``action`` within any ``window`` seconds (all credentials unless
        ``secret_id`` is given)."""
        return self.arrivals.max_in_window(action, window, secret_id)

    @property
    def throttled(self) -> int:
        """RequestLimitExceeded answers given by the rate limit (injected storms excluded)."""
        return self.arrivals.limited

    def stats(
        self,
        window: float = 1.0,
        secret_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[str, Any]:
        """Arrival statistics per action, over the log (optionally a wall-clock range)."""
        by_action: dict[str, list[Arrival]] = {}
        first: float | None = None
        last: float | None = None
        for a in self.arrivals.select(None, secret_id, since, until):
            by_action.setdefault(a.action, []).append(a)
            if first is None:
                first = a.wall
            last = a.wall
        actions: dict[str, Any] = {}
        for action, items in sorted(by_action.items()):
            codes: dict[str, int] = {}
            for a in items:
                codes[a.code] = codes.get(a.code, 0) + 1
            actions[action] = {
                "arrivals": len(items),
                "max_in_window": self.arrivals.max_in_window(
                    action, window, secret_id, since, until
                ),
                "codes": codes,
            }
        return {
            "arrivals": sum(len(v) for v in by_action.values()),
            "total": self.arrivals.total,
            "throttled": self.arrivals.limited,
            "window": window,
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
            "first_wall": first,
            "last_wall": last,
            "actions": actions,
            "faults_fired": dict(self.faults.fired),
            "callbacks": self.callback_stats,
            "tasks": self.phase_counts(),
        }

    def reset_stats(self) -> None:
        """Forget the arrival log, the counters and the rate window's history."""
        self.arrivals.clear()
        self.faults.fired.clear()
        self._counter.clear()


def _parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen: expected HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def serve(
    listen: str,
    scenario_path: Path | None,
    *,
    out: IO[str] | None = None,
) -> None:
    """Run a standalone simulator on ``listen`` (HOST:PORT) until cancelled.

    Prints where it listens and which credentials it accepts; a SecretKey is printed only
    for the built-in demo pair, never one from a scenario.
    """
    out = out or sys.stdout
    host, port = _parse_listen(listen)
    scenario = load_scenario(scenario_path) if scenario_path is not None else Scenario()
    sim = Simulator.from_scenario(scenario)
    url = await sim.start(host, port)
    try:
        print(f"TRTC simulator (API version 2019-07-22) listening on {url}", file=out)
        print(f"  control surface: {url}/-/sim/", file=out)
        print(
            f"  STS (AssumeRole, AssumeRoleWithWebIdentity) on POST {url}/; CVM metadata "
            f"credentials at {url}/latest/meta-data/cam/security-credentials/",
            file=out,
        )
        for secret_id in sim.credentials:
            if secret_id == DEFAULT_SECRET_ID and not scenario.credentials:
                key = f"SecretKey {DEFAULT_SECRET_KEY} (built-in demo pair)"
            else:
                key = "SecretKey from the scenario"
            print(f"  accepts SecretId {secret_id}, {key}", file=out)
        if sim.callback is not None:
            print(f"  callbacks to {sim.callback.url}", file=out)
        out.flush()
        await asyncio.Event().wait()
    finally:
        await sim.stop()
