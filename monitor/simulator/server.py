"""The simulator: an aiohttp server speaking the TRTC recording API (Version 2019-07-22).

:class:`Simulator` is the public entry: it holds the settings (changeable at run time), listens,
and routes ``POST /`` to the recording API (:mod:`~monitor.simulator.api`, the path a request
takes), the metadata service and the control surface under ``/-/sim/``. The tasks live in
:mod:`~monitor.simulator.task_table`, the actions in :mod:`~monitor.simulator.actions`, the
answers to injected faults in :mod:`~monitor.simulator.responses` and the statistics in
:mod:`~monitor.simulator.stats`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from monitor.models import Status
from monitor.simulator.api import add_api_routes
from monitor.simulator.arrivals import ArrivalLog, SlidingWindowCounter
from monitor.simulator.callbacks import CallbackSender, CallbackSettings
from monitor.simulator.clock import Clock, SystemClock
from monitor.simulator.control import add_control_routes
from monitor.simulator.faults import Fault, FaultInjector
from monitor.simulator.lifecycle import (
    LEAVE_KICKED_BY_SERVER,
    Life,
    LifeRange,
    TaskSpec,
    UploadPlan,
)
from monitor.simulator.metadata import add_metadata_routes
from monitor.simulator.protocol import (
    DEFAULT_ENDED_CODE,
    ENDED_CODES,
)
from monitor.simulator.responses import drop
from monitor.simulator.scenario import Scenario
from monitor.simulator.stats import arrival_stats
from monitor.simulator.sts import CredentialIssuer
from monitor.simulator.task_table import TaskTable
from monitor.trtc.sites import Site

__all__ = ["DEFAULT_SECRET_ID", "DEFAULT_SECRET_KEY", "Simulator"]

# A well-known pair for the standalone simulator and the demo; it protects nothing.
DEFAULT_SECRET_ID = "AKIDSIMULATOR"  # noqa: S105 - a public demo value
DEFAULT_SECRET_KEY = "simulator-secret-key"  # noqa: S105 - a public demo value


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
        default_site: Site | None = None,
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
        self.clock_skew = clock_skew
        # The site whose regions a request signed for a host of neither site (loopback) may
        # use; None: every region of the API. A request signed for a site's own host always
        # gets that site's regions.
        self.default_site = default_site
        rng = random.Random(seed)
        self.hour_length = hour_length
        self.max_tasks_per_app = max_tasks_per_app
        self.faults = FaultInjector(random.Random(rng.random()))
        self.faults.extend(faults)
        self.arrivals = ArrivalLog(arrival_log_size)
        self._callback = callback
        self._sender = CallbackSender(callback) if callback is not None else None
        # The same generator draws the faults' seed above and then lives and TaskIds, so a
        # seed gives the same run as it always did.
        self.table = TaskTable(
            clock=clock or SystemClock(),
            rng=rng,
            random_life=random_life or LifeRange(),
            callback=callback,
            sender=self._sender,
        )
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._stopping: asyncio.Event | None = None
        self._event_loop_task: asyncio.Task[None] | None = None

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
            default_site=scenario.site,
        )
        for spec in scenario.tasks:
            sim.add_spec(spec)
        return sim

    # ----------------------------------------------------------------- settings

    @property
    def accepted_keys(self) -> collections.ChainMap[str, str]:
        """SecretId -> SecretKey for every credential accepted now, temporary ones included."""
        # Built per request: tests replace ``credentials`` and ``tokens`` wholesale.
        return collections.ChainMap(self.credentials, self.issuer.keys)

    @property
    def accepted_tokens(self) -> collections.ChainMap[str, str]:
        """SecretId -> the X-TC-Token it must present."""
        return collections.ChainMap(self.tokens, self.issuer.tokens)

    @property
    def rate_window(self) -> float:
        return self._counter.window

    @rate_window.setter
    def rate_window(self, value: float) -> None:
        self._counter = SlidingWindowCounter(value)

    def count_request(self, secret_id: str, action: str, at: float) -> int:
        """Count a request against the rate limit; returns how many its window now holds."""
        return self._counter.hit((secret_id, action), at)

    @property
    def callback(self) -> CallbackSettings | None:
        return self._callback

    @property
    def callback_stats(self) -> dict[str, int]:
        return self._sender.stats.to_dict() if self._sender is not None else {}

    @property
    def clock(self) -> Clock:
        return self.table.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.table.clock = clock

    @property
    def random_life(self) -> LifeRange:
        """Where the lives of tasks added without one are drawn from."""
        return self.table.random_life

    @random_life.setter
    def random_life(self, value: LifeRange) -> None:
        self.table.random_life = value

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
        add_api_routes(app, self)
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
            self._event_loop_task = asyncio.create_task(self.table.run_events(), name="sim-events")
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
        return drop(request)

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        stopping = self._stopping
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    # ----------------------------------------------------------------- tasks

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
        kind: str = "cloud",
        record_id: str | None = None,
        recorder_key: str | None = None,
    ) -> str:
        """Start a task now and return its TaskId.

        Without ``life``, one is drawn from ``random_life``. ``max_idle_time`` ends an idle
        task after that long with LeaveCode 99; ``expire_after`` (seconds) hides the task
        from the API after that long, as ResourceExpiredHour does, while its life goes on.
        ``kind="web"`` makes a web-page recording (with an optional ``record_id``);
        ``recorder_key`` makes a relay recording that DescribeCloudRecording reports with it.
        """
        return self.add_spec(
            TaskSpec(
                sdk_app_id,
                task_id,
                life,
                room_id=room_id,
                user_id=user_id,
                max_idle_time=max_idle_time,
                expire_after=expire_after,
                vod=vod,
                upload=upload or UploadPlan(),
                kind=kind,
                record_id=record_id,
                recorder_key=recorder_key,
            )
        )

    def add_spec(self, spec: TaskSpec) -> str:
        """:meth:`add_task` for a task already described by a :class:`TaskSpec`."""
        return self.table.add_task(spec)

    def exit_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the recorder leave now: Exited, then gone after the life's ``exited`` time.

        False when it had already exited; KeyError for a task never added.
        """
        return self.table.exit_task(sdk_app_id, task_id, leave_code)

    def end_task(
        self, sdk_app_id: int, task_id: str, leave_code: int = LEAVE_KICKED_BY_SERVER
    ) -> bool:
        """Make the task vanish now (the API answers the ended code from now on)."""
        return self.table.end_task(sdk_app_id, task_id, leave_code)

    def set_upload(self, sdk_app_id: int, task_id: str, upload: UploadPlan) -> None:
        """Change how the task's upload goes, for the callbacks not yet sent (ValueError for a
        plan its storage cannot have, KeyError for a task never added)."""
        self.table.set_upload(sdk_app_id, task_id, upload)

    def task_status(self, sdk_app_id: int, task_id: str) -> Status | None:
        """What DescribeCloudRecording would report now; None when it answers an ended code."""
        return self.table.task_status(sdk_app_id, task_id)

    def task_info(self, sdk_app_id: int, task_id: str) -> dict[str, Any] | None:
        return self.table.task_info(sdk_app_id, task_id)

    def tasks_info(self) -> list[dict[str, Any]]:
        return self.table.tasks_info()

    def phase_counts(self) -> dict[str, int]:
        return self.table.phase_counts()

    def run_due_events(self) -> int:
        """Queue every callback whose time has come; returns how many. Runs by itself while
        started; call it directly only with a manual clock."""
        return self.table.run_due_events()

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
        return {
            **arrival_stats(self.arrivals, window, secret_id, since, until),
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
            "faults_fired": dict(self.faults.fired),
            "callbacks": self.callback_stats,
            "tasks": self.phase_counts(),
        }

    def reset_stats(self) -> None:
        """Forget the arrival log, the counters and the rate window's history."""
        self.arrivals.clear()
        self.faults.fired.clear()
        self._counter.clear()
