"""The joints between the daemon's parts that are more than passing one to another: which
share of the work this replica takes, what reaches the alert engine from the credentials and
the budget, and what the HTTP layer and a scrape see.

Each function takes the parts it joins as arguments; nothing here holds the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, TypeVar, overload

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.accounts import AccountRuntime
from monitor.alerts.engine import AlertEngine
from monitor.budget import Budget
from monitor.cluster.coordinator import replica_id_of
from monitor.cluster.replica import Replica, redis_store_of
from monitor.cluster.share import Share
from monitor.cluster.solo import Solo
from monitor.config import Config, ResolvedSecrets, callback_app_keys
from monitor.credentials import RefreshEvent
from monitor.events import EventBus
from monitor.metrics import Exposition, MonitorMetrics, Rendered, StateView
from monitor.poller import IntervalPolicy, Poller
from monitor.ratelimit import mark_sent
from monitor.ratelimit.factory import LimiterBackend, new_limiter
from monitor.registry import TaskRegistry
from monitor.secrets import Secret
from monitor.store.base import Store
from monitor.tracker import Tracker
from monitor.trtc.client import TrtcClient, new_session

__all__ = [
    "Background",
    "CredentialAlerts",
    "MetricsPort",
    "Started",
    "collector_off_then_frozen",
    "feed_budget",
    "new_budget",
    "new_client",
    "new_share",
    "open_store",
    "state_view",
]

log = structlog.get_logger("monitor.daemon")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Keys:
    """The API token and the callbacks' keys of the configuration in force (values: read only
    by the checks that compare them, never logged)."""

    api_token: str | None = None
    callback_key: str | None = None
    callback_app_keys: Mapping[int, str] | None = None
    tuikit_token: str | None = None

    @classmethod
    def of(cls, config: Config, secrets: ResolvedSecrets) -> Keys:
        def value(secret: Secret | None) -> str | None:
            return secret.get() if secret else None

        return cls(
            value(secrets.api_token),
            value(secrets.callback_key),
            callback_app_keys(config.callbacks, secrets),
            value(secrets.tuikit_token),
        )


NO_KEYS: Final = Keys()


class Started(Generic[T]):
    """A part the daemon makes when it starts: ``daemon.store`` reads ``daemon._store``, and
    fails plainly ("daemon not started") before it is made."""

    __slots__ = ("_attr",)

    def __init__(self) -> None:
        self._attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type) -> Started[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object | None, owner: type) -> T | Started[T]:
        if obj is None:
            return self
        value: T | None = getattr(obj, self._attr)
        assert value is not None, "daemon not started"
        return value


@contextlib.contextmanager
def collector_off_then_frozen() -> Iterator[None]:
    """A start allocates millions of objects that all live on (the table, its schedule):
    collections during it would walk the growing table again and again. The collector is off
    until they are in place; then they are kept out of every future full collection, which
    would otherwise walk all of them again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
        release_free_heap()
    finally:
        if enabled:
            gc.enable()


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``). Loading the
    table frees many short-lived objects and buffers among those that live on; glibc keeps
    such pages resident until asked (about 5 MiB at 100,000 tasks). False, and nothing done,
    where the C library has no such call (musl, macOS)."""
    import ctypes  # only here: start-up needs it once

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def new_client(config: Config) -> tuple[aiohttp.ClientSession, TrtcClient]:
    """The HTTP session every outbound call shares, and the TRTC client on it."""
    session = new_session()
    client = TrtcClient(
        session,
        timeout=config.polling.timeout,
        ended_codes=config.polling.ended_codes,
        on_send=mark_sent,
    )
    return session, client


class Background:
    """Work run in the background (referenced until done) and periodic work, all stopped
    together by :meth:`cancel`."""

    __slots__ = ("_jobs", "_tasks")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._jobs: AsyncIOScheduler | None = None

    def every(self, jobs: Mapping[Callable[[], Awaitable[object]], float]) -> None:
        """Start periodic work: each job every so many seconds, never two runs of one at once."""
        self._jobs = AsyncIOScheduler()
        for job, seconds in jobs.items():
            self._jobs.add_job(job, "interval", seconds=seconds, max_instances=1)
        self._jobs.start()

    def spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_work_failed", error=repr(task.exception()))

    async def cancel(self) -> None:
        if self._jobs is not None:
            self._jobs.shutdown(wait=False)
            self._jobs = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def open_store(store: Store, registry: TaskRegistry) -> Store:
    """``store`` open, its tasks loaded into ``registry``; closed again if loading fails
    (StoreError: the store cannot be used)."""
    await store.open()
    try:
        registry.put_many(await store.load_tasks())
    except BaseException:
        await store.close()
        raise
    return store


def new_budget(config: Config, accounts: Mapping[str, AccountRuntime], store: Store) -> Budget:
    """Limiters of the backend the storage implies (shared through Redis among replicas)."""
    backend = LimiterBackend.for_storage(config.storage.backend)
    return Budget(accounts, partial(new_limiter, backend=backend, store=store))


def new_share(
    config: Config,
    store: Store,
    *,
    tracker: Tracker,
    registry: TaskRegistry,
    metrics: MonitorMetrics,
    accounts: Callable[[], Collection[str]],
    intervals: IntervalPolicy,
    bus: EventBus,
    clock: Callable[[], float] = time.time,
) -> Share:
    """Everything, alone on SQLite; this replica's part of a cluster on Redis."""
    if config.storage.backend != "redis":
        return Solo(
            replica_id_of(config.cluster),
            store=store,
            tracker=tracker,
            registry=registry,
            metrics=metrics,
            accounts=accounts,
        )
    return Replica(
        redis_store_of(store),
        config.cluster,
        tracker=tracker,
        registry=registry,
        intervals=intervals,
        bus=bus,
        metrics=metrics,
        accounts=accounts,
        clock=clock,
    )


class CredentialAlerts:
    """After every refresh attempt: the expiring alert's input, decided at once (short
    credentials may expire within one sweep interval)."""

    __slots__ = ("_alerts", "_ready", "_spawn")

    def __init__(
        self,
        alerts: AlertEngine,
        *,
        ready: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, object]], None],
    ) -> None:
        self._alerts = alerts
        self._ready = ready
        self._spawn = spawn

    def __call__(self, event: RefreshEvent) -> None:
        self._alerts.on_credentials(
            event.account,
            failing=event.failing,
            expires_at=event.expires_at,
            source=event.source,
            error=event.error,
        )
        if self._ready():
            self._spawn(self._alerts.sweep_accounts())


def feed_budget(alerts: AlertEngine, budget: Budget, poller: Poller, share: Share) -> None:
    """The over-budget alert's input: the fleet's need weighed against the shared budget."""
    rate = poller.required_rate if share.alone else poller.fleet_required_rate()
    for account, (need, capacity) in budget.by_account(rate).items():
        alerts.set_budget(account, need, capacity)


def state_view(
    config: Config, registry: TaskRegistry, budget: Budget, poller: Poller, share: Share
) -> StateView:
    """What a scrape exports besides the instruments: the tasks this replica answers for."""
    required = budget.by_account(poller.required_rate)
    tasks = registry.tasks()
    return StateView(
        tasks=tasks if share.alone else [t for t in tasks if share.owns(t.key)],
        fleet=None if share.alone else tasks,
        export_fleet=share.leads,
        per_task=config.metrics.per_task,
        info_labels=list(config.metrics.labels),
        buckets=budget.gauges(),
        required_rate={name: pair[0] for name, pair in required.items()},
    )


class MetricsPort:
    """The metrics side of the HTTP port: a snapshot on the loop, rendered elsewhere."""

    __slots__ = ("_exposition", "_metrics", "_view")

    def __init__(
        self, exposition: Exposition, metrics: MonitorMetrics, view: Callable[[], StateView]
    ) -> None:
        self._exposition = exposition
        self._metrics = metrics
        self._view = view

    async def render(self, accept: str | None) -> Rendered:
        return await self._exposition.render(self._view(), accept)

    def count_callback(self, event_type: str, outcome: str) -> None:
        self._metrics.callbacks.labels(event_type, outcome).inc()
