"""The daemon: composes the parts and runs their life cycle and reloads. Nothing else.

The parts, and the one direction data flows between them:

* :class:`~monitor.registry.TaskRegistry` holds the task table;
* :class:`~monitor.poller.Poller` polls through the :class:`~monitor.budget.Budget`'s
  limiters and hands answers to the :class:`~monitor.tracker.Tracker`;
* the tracker stores every change, applies it to the table, then announces it on the
  :class:`~monitor.events.EventBus`;
* metrics, the log (:mod:`monitor.journal`), alerting, scheduling and hooks subscribe;
* the HTTP layer sees them through the narrow interfaces of :mod:`monitor.http.ports`.

A reload is one serialised operation (SIGHUP and ``POST /-/reload`` share it): everything is
read and validated first, then swapped; a failure leaves the running configuration whole.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import journal
from monitor.accounts import AccountRuntime, build_accounts
from monitor.alerts.engine import AlertEngine
from monitor.budget import Budget
from monitor.cluster.coordinator import replica_id_of
from monitor.cluster.replica import Replica, Share, Solo, redis_store_of
from monitor.config import (
    CallbacksConfig,
    Config,
    ConfigError,
    ResolvedSecrets,
    callback_app_keys,
    load_config,
    resolve_secrets,
)
from monitor.credentials import CredentialSet, RefreshEvent, RefreshRecorder
from monitor.events import EventBus
from monitor.http.ports import AlertReader, HttpContext, ReloadResult
from monitor.log import set_secrets
from monitor.metrics import Exposition, MonitorMetrics, Rendered, StateView
from monitor.poller import IntervalPolicy, Poller
from monitor.ratelimit import mark_sent
from monitor.ratelimit.factory import LimiterBackend, new_limiter
from monitor.registry import TaskRegistry
from monitor.store.base import Store, StoreError
from monitor.store.factory import new_store
from monitor.tracker import Tracker
from monitor.trtc.client import TrtcClient, new_session

log = structlog.get_logger("monitor.daemon")

PURGE_EVERY_SECONDS = 60.0
# Time-based alert conditions (stale, idle, budget) are checked this often.
ALERT_SWEEP_SECONDS = 5.0

# Keys read once at start: a reload reports a change to them instead of applying it.
RESTART_KEYS: tuple[tuple[str, Callable[[Config], object]], ...] = (
    ("server.listen", lambda c: c.server.listen),
    ("server.max_body_bytes", lambda c: c.server.max_body_bytes),
    ("storage", lambda c: c.storage),
    ("cluster", lambda c: c.cluster),
    ("callbacks.path", lambda c: c.callbacks.path if c.callbacks.enabled else None),
    ("callbacks.listen", lambda c: c.callbacks.listen),
    ("logging", lambda c: c.logging),
)


class ReloadHook(Protocol):
    """Something read again with every reload (the listeners' web configuration files):
    ``prepare`` reads and checks (ConfigError: the reload is refused, nothing changed), the
    call it returns puts the result in force once the reload goes ahead."""

    async def prepare(self, config: Config) -> Callable[[], None]: ...


def restart_required(old: Config, new: Config) -> tuple[str, ...]:
    """The keys whose change a reload cannot apply to a running daemon."""
    return tuple(name for name, value in RESTART_KEYS if value(old) != value(new))


class Daemon:
    """One running monitor. ``start`` and ``stop`` bracket its life; ``reload`` re-reads."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.metrics = MonitorMetrics()
        self.exposition = Exposition(self.metrics)
        self.bus = EventBus()
        self.registry = TaskRegistry()
        self._started = False
        self._running_config = config  # what the restart-only keys still come from
        self._api_token: str | None = None
        self._callback_key: str | None = None
        self._callback_app_keys: dict[int, str] | None = None
        self._store: Store | None = None
        self._tracker: Tracker | None = None
        self._budget: Budget | None = None
        self._poller: Poller | None = None
        self._alerts: AlertEngine | None = None
        self._share: Share | None = None
        self._client: TrtcClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._jobs: AsyncIOScheduler | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.reload_hooks: list[ReloadHook] = []
        # One credential provider per account (SPEC section 5); refresh attempts feed the
        # credential metrics and the expiring alert.
        self.credentials = CredentialSet(RefreshRecorder(self.metrics, [self._on_credentials]))

    # ------------------------------------------------------------------ the parts

    @property
    def store(self) -> Store:
        assert self._store is not None, "daemon not started"
        return self._store

    @property
    def tracker(self) -> Tracker:
        assert self._tracker is not None, "daemon not started"
        return self._tracker

    @property
    def budget(self) -> Budget:
        assert self._budget is not None, "daemon not started"
        return self._budget

    @property
    def poller(self) -> Poller:
        assert self._poller is not None, "daemon not started"
        return self._poller

    @property
    def alerts(self) -> AlertEngine:
        assert self._alerts is not None, "daemon not started"
        return self._alerts

    @property
    def share(self) -> Share:
        """This replica's share of the work: all of it alone, its part among replicas."""
        assert self._share is not None, "daemon not started"
        return self._share

    @property
    def fleet_alerts(self) -> AlertReader:
        """Every replica's firing alerts (this daemon's own when it is alone)."""
        return self.share.alert_reader()

    @property
    def ready(self) -> bool:
        """Started, and its store takes writes: not ready while a replica is cut off from
        Redis, or the SQLite file is gone or its disk refuses writes."""
        return self._started and self._share is not None and self._share.store_up

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the store, load the table, start polling. Raises ConfigError (a secret is
        missing) or StoreError (the store cannot be used) before anything runs."""
        # A restart allocates millions of objects that all live on (the table, its schedule):
        # collections during it would walk the growing table again and again. The collector
        # is off until they are in place; then they are kept out of every future full
        # collection, which would otherwise walk all of them again and again.
        enabled = gc.isenabled()
        gc.disable()
        try:
            await self._start()
            gc.freeze()
        finally:
            if enabled:
                gc.enable()

    async def _start(self) -> None:
        config = self.config
        secrets = resolve_secrets(config)
        providers = self.credentials.plan(config, secrets)
        accounts = build_accounts(config, providers.providers)
        set_secrets(secrets.values())
        self._api_token = secrets.api_token.get() if secrets.api_token else None
        self._callback_key = secrets.callback_key.get() if secrets.callback_key else None
        self._callback_app_keys = callback_app_keys(config.callbacks, secrets)
        self._reload_lock = asyncio.Lock()

        store = new_store(config.storage, secrets.redis_url)
        await store.open()
        self._store = store
        try:
            self.registry.put_many(await store.load_tasks())
        except BaseException:
            await store.close()
            raise

        self._session = new_session()
        self._client = TrtcClient(
            self._session,
            timeout=config.polling.timeout,
            ended_codes=config.polling.ended_codes,
            on_send=mark_sent,
        )
        self._budget = Budget(
            accounts,
            partial(
                new_limiter, backend=LimiterBackend.for_storage(config.storage.backend), store=store
            ),
        )
        self._tracker = Tracker(
            store,
            self.registry,
            self.bus,
            resource_expired_hours=lambda: self.config.polling.resource_expired_hours,
            clock=self.clock,
        )
        # Subscription order is the order of reactions: count and log, schedule, alert.
        self.metrics.subscribe(self.bus)
        journal.subscribe(self.bus)
        self._poller = Poller(
            registry=self.registry,
            tracker=self._tracker,
            budget=self._budget,
            client=self._client,
            bus=self.bus,
            metrics=self.metrics,
            intervals=IntervalPolicy(config.polling),
            max_in_flight=config.polling.max_in_flight,
            jitter=config.polling.jitter,
            clock=self.clock,
            owns=lambda key: self.share.owns(key),
        )
        self._alerts = AlertEngine(
            config.alerts,
            store,
            self.metrics,
            interval_of=lambda task: self.poller.intervals.of(task),
            clock=self.clock,
            session=self._session,
            external_url=config.server.external_url,
            webhook_headers=secrets.webhook_headers,
            robot_secrets=secrets.robots,
            owns=lambda key: self.share.alerts_on(key),
            leads=lambda: self.share.alerts_monitor(),
        )
        self._share = self._new_share(config, store)
        await self._alerts.start()
        self._alerts.subscribe(self.bus)
        # Credentials before the first poll (bounded: a source that is down is retried in the
        # background, and the polls meanwhile fail as `auth`).
        await self.credentials.prepare(providers, self._session)
        await self.credentials.commit(providers)
        self._poller.resume(self.registry)
        await self._share.start()
        await self._tracker.register_many(config.tasks)
        # Alert whatever was stored but not yet alerted when the last life ended.
        await self._alerts.sweep(self.registry.tasks())
        self._poller.start()
        self._jobs = AsyncIOScheduler()
        self._jobs.add_job(self.purge, "interval", seconds=PURGE_EVERY_SECONDS, max_instances=1)
        self._jobs.add_job(
            self.sweep_alerts, "interval", seconds=ALERT_SWEEP_SECONDS, max_instances=1
        )
        self._jobs.start()
        self._started = True
        log.info(
            "daemon_started",
            tasks=len(self.registry),
            accounts=sorted(accounts),
            store=str(store),
            replica=self.share.replica_id,
        )

    def _new_share(self, config: Config, store: Store) -> Share:
        accounts = self.account_names
        if config.storage.backend != "redis":
            return Solo(
                replica_id_of(config.cluster),
                store=store,
                tracker=self.tracker,
                registry=self.registry,
                metrics=self.metrics,
                accounts=accounts,
                alerts=lambda: self.alerts,
            )
        return Replica(
            redis_store_of(store),
            config.cluster,
            tracker=self.tracker,
            registry=self.registry,
            poller=self.poller,
            alerts=lambda: self.alerts,
            bus=self.bus,
            metrics=self.metrics,
            accounts=accounts,
            clock=self.clock,
        )

    async def stop(self) -> None:
        self._started = False
        if self._jobs is not None:
            self._jobs.shutdown(wait=False)
            self._jobs = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._share is not None:
            await self._share.stop()
        if self._poller is not None:
            await self._poller.stop()
        await self.credentials.stop()
        if self._alerts is not None:
            await self._alerts.stop()
        if self._store is not None:
            await self._store.close()
        if self._session is not None:
            await self._session.close()
        log.info("daemon_stopped")

    def install_signal_handlers(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run ``work`` in the background, referenced until done (and cancelled on stop)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_work_failed", error=repr(task.exception()))

    # ------------------------------------------------------------------ reload

    async def reload(self) -> ReloadResult:
        """Re-read the config file: validate everything, then swap; or change nothing."""
        if self.config_path is None or self._reload_lock is None:
            return ReloadResult(False, ("the daemon was not started from a file",))
        async with self._reload_lock:
            return await self._reload(self.config_path)

    async def _reload(self, path: Path) -> ReloadResult:
        try:
            config = await asyncio.to_thread(load_config, path)
            secrets = resolve_secrets(config)
            # New providers are made here but started only once the reload goes ahead.
            providers = self.credentials.plan(config, secrets)
            accounts = build_accounts(config, providers.providers)
            commits = [await hook.prepare(config) for hook in self.reload_hooks]
            # Static tasks are stored before anything is swapped; applied after the swap, when
            # their accounts exist. A failed write leaves everything as it was.
            pending = await self.tracker.store_registrations(config.tasks)
        except ConfigError as exc:
            return self._reload_failed(list(exc.errors))
        except (ValueError, StoreError) as exc:
            return self._reload_failed([str(exc)])
        restart = restart_required(self._running_config, config)
        assert self._session is not None
        await self.credentials.prepare(providers, self._session)
        self._swap(config, accounts, secrets)
        for commit in commits:
            commit()
        await self.credentials.commit(providers)
        await self.tracker.apply_registrations(pending)
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(time.time())
        if restart:
            log.warning("config_reload_needs_restart", keys=list(restart))
        log.info("config_reloaded", path=str(path), restart_required=list(restart))
        return ReloadResult(True, restart_required=restart)

    def _reload_failed(self, errors: list[str]) -> ReloadResult:
        self.metrics.config_reload_ok.set(0)
        log.error("config_reload_failed", errors=errors)
        return ReloadResult(False, tuple(errors))

    def _swap(
        self,
        config: Config,
        accounts: Mapping[str, AccountRuntime],
        secrets: ResolvedSecrets,
    ) -> None:
        """Apply a validated configuration; nothing here can fail half-way."""
        set_secrets(secrets.values())
        self._api_token = secrets.api_token.get() if secrets.api_token else None
        self._callback_key = secrets.callback_key.get() if secrets.callback_key else None
        self._callback_app_keys = callback_app_keys(config.callbacks, secrets)
        for gone in set(self.config.accounts) - set(config.accounts):
            self.alerts.forget_account(gone)
            self.credentials_recorder.forget(gone)
        replaced = self.budget.configure(accounts)
        assert self._client is not None
        self._client.configure(
            timeout=config.polling.timeout, ended_codes=config.polling.ended_codes
        )
        self.poller.configure(config.polling, replaced)
        self.alerts.configure(
            config.alerts, secrets.webhook_headers, secrets.robots, config.server.external_url
        )
        self.config = config

    # ------------------------------------------------------------------ credentials

    @property
    def credentials_recorder(self) -> RefreshRecorder:
        observer = self.credentials.observer
        assert isinstance(observer, RefreshRecorder)
        return observer

    def _on_credentials(self, event: RefreshEvent) -> None:
        """After every refresh attempt: the expiring alert's input, decided at once (short
        credentials may expire within one sweep interval)."""
        if self._alerts is None:
            return
        self._alerts.on_credentials(
            event.account,
            failing=event.failing,
            expires_at=event.expires_at,
            source=event.source,
            error=event.error,
        )
        if self.ready:
            self._spawn(self._alerts.sweep_accounts())

    # ------------------------------------------------------------------ periodic work

    async def purge(self) -> list[Any]:
        """Forget ended and removed tasks older than the retention, with their series."""
        try:
            return await self.tracker.purge(self.clock() - self.config.storage.retention)
        except StoreError as exc:
            log.error("purge_failed", error=str(exc))
            return []

    async def sweep_alerts(self) -> None:
        # The over-budget alert weighs the fleet's need against the shared budget.
        rate = self.poller.required_rate if self.share.alone else self.poller.fleet_required_rate()
        required = self.budget.by_account(rate)
        for account, (need, capacity) in required.items():
            self.alerts.set_budget(account, need, capacity)
        await self.alerts.sweep(self.registry.tasks())

    # ------------------------------------------------------------------ what HTTP sees

    @property
    def callback_path(self) -> str | None:
        callbacks = self._running_config.callbacks
        return callbacks.path if callbacks.enabled else None

    def http_context(self) -> HttpContext:
        return HttpContext(
            tasks=self.registry,
            writer=self.share.writer(),
            alerts=self.fleet_alerts,
            control=self,
            metrics=_Exporter(self),
            callbacks=self.share.writer(),
            clock=self.clock,
            max_body_bytes=self._running_config.server.max_body_bytes,
            shared_store=None if self.share.alone else self._store,
        )

    def account_names(self) -> Collection[str]:
        return self.budget.accounts.keys()

    def api_token(self) -> str | None:
        return self._api_token

    def callback_key(self) -> str | None:
        return self._callback_key

    def callback_app_keys(self) -> Mapping[int, str] | None:
        return self._callback_app_keys

    def callback_settings(self) -> CallbacksConfig:
        return self.config.callbacks

    def state_view(self) -> StateView:
        required = self.budget.by_account(self.poller.required_rate)
        share = self.share
        tasks = self.registry.tasks()
        return StateView(
            tasks=tasks if share.alone else [t for t in tasks if share.owns(t.key)],
            fleet=None if share.alone else tasks,
            export_fleet=share.leads,
            per_task=self.config.metrics.per_task,
            info_labels=list(self.config.metrics.labels),
            buckets=self.budget.gauges(),
            required_rate={name: pair[0] for name, pair in required.items()},
        )


class _Exporter:
    """The metrics side of the HTTP port: a snapshot on the loop, rendered elsewhere."""

    __slots__ = ("_daemon",)

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    async def render(self, accept: str | None) -> Rendered:
        return await self._daemon.exposition.render(self._daemon.state_view(), accept)

    def count_callback(self, event_type: str, outcome: str) -> None:
        self._daemon.metrics.callbacks.labels(event_type, outcome).inc()
