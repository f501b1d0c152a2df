"""The daemon: composes the parts and runs their life cycle. Nothing else.

Data flows one way: the poller announces each answer (the budget backs off, the metrics count)
and hands it to the tracker, which stores, applies and announces every change on the event bus;
metrics, the log, alerting, scheduling and hooks subscribe; HTTP sees :mod:`monitor.http.ports`.
The parts are made in an order that needs no reference back: the share of the work first, then
the poller and the alert engine that ask it what this replica owns (it drives them once it
starts). Reloads are :mod:`monitor.reload`'s; the joints between parts :mod:`monitor.wiring`'s.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from monitor import journal, wiring
from monitor.accounts import build_accounts
from monitor.alerts.engine import AlertEngine
from monitor.budget import Budget
from monitor.cluster.share import Share
from monitor.config import (
    CallbacksConfig,
    Config,
    ResolvedSecrets,
    resolve_secrets,
)
from monitor.credentials import CredentialSet, RefreshRecorder
from monitor.events import EventBus
from monitor.http.ports import AlertReader, HttpContext, ReloadResult
from monitor.log import set_secrets
from monitor.metrics import Exposition, MonitorMetrics, StateView
from monitor.poller import IntervalPolicy, Poller
from monitor.registry import TaskRegistry
from monitor.reload import Reloader, ReloadHook, Running
from monitor.store.base import Store, StoreError
from monitor.store.factory import new_store
from monitor.tracker import Tracker
from monitor.trtc.sites import Site
from monitor.wiring import Started

__all__ = ["Daemon", "ReloadHook"]

log = structlog.get_logger("monitor.daemon")

PURGE_EVERY_SECONDS = 60.0
# Time-based alert conditions (stale, idle, budget) are checked this often.
ALERT_SWEEP_SECONDS = 5.0


class Daemon:
    """One running monitor. ``start`` and ``stop`` bracket its life; ``reload`` re-reads."""

    # The parts made by ``start`` (reading one before raises "daemon not started").
    store = Started[Store]()
    tracker = Started[Tracker]()
    budget = Started[Budget]()
    poller = Started[Poller]()
    alerts = Started[AlertEngine]()
    share = Started[Share]()  # this replica's share of the work: all of it alone

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
        self._keys = wiring.NO_KEYS  # the API token and the callbacks' keys in force
        self._store: Store | None = None
        self._tracker: Tracker | None = None
        self._budget: Budget | None = None
        self._poller: Poller | None = None
        self._alerts: AlertEngine | None = None
        self._share: Share | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reloader: Reloader | None = None
        self._background = wiring.Background()
        self.reload_hooks: list[ReloadHook] = []
        # Refresh attempts feed the credential metrics and, once it exists, the alert engine.
        self.credentials_recorder = RefreshRecorder(self.metrics)
        self.credentials = CredentialSet(self.credentials_recorder)

    @property
    def fleet_alerts(self) -> AlertReader:
        """Every replica's firing alerts (this daemon's own when it is alone)."""
        return self.share.alert_reader()

    @property
    def ready(self) -> bool:
        """Started, and its store takes writes: not ready while a replica is cut off from
        Redis, or the SQLite file is gone or its disk refuses writes."""
        return self._started and self._share is not None and self._share.store_up

    def _is_ready(self) -> bool:
        return self.ready

    async def start(self) -> None:
        """Open the store, load the table, start polling. Raises ConfigError (a secret is
        missing) or StoreError (the store cannot be used) before anything runs."""
        with wiring.collector_off_then_frozen():
            await self._start()

    async def _start(self) -> None:
        config = self.config
        secrets = resolve_secrets(config)
        providers = self.credentials.plan(config, secrets)
        accounts = build_accounts(config, providers.providers)
        self._adopt(config, secrets)

        store = new_store(config.storage, secrets.redis_url)
        self._store = await wiring.open_store(store, self.registry)
        self._session, client = wiring.new_client(config)
        budget = self._budget = wiring.new_budget(config, accounts, store)
        intervals = IntervalPolicy(config.polling)
        tracker = self._tracker = Tracker(
            store,
            self.registry,
            self.bus,
            resource_expired_hours=intervals.resource_expired_hours,
            clock=self.clock,
        )
        share = self._share = wiring.new_share(
            config,
            store,
            tracker=tracker,
            registry=self.registry,
            metrics=self.metrics,
            accounts=budget.account_names,
            intervals=intervals,
            bus=self.bus,
            clock=self.clock,
        )
        # Subscription order is the order of reactions: count and log, schedule, alert, back off.
        self.metrics.subscribe(self.bus)
        journal.subscribe(self.bus)
        poller = self._poller = Poller(
            registry=self.registry,
            tracker=tracker,
            budget=budget,
            client=client,
            bus=self.bus,
            intervals=intervals,
            max_in_flight=config.polling.max_in_flight,
            jitter=config.polling.jitter,
            clock=self.clock,
            owns=share.owns,
            on_dispatch=self.metrics.observe_dispatch,
        )
        alerts = self._alerts = AlertEngine(
            config.alerts,
            store,
            self.metrics,
            interval_of=intervals.of,
            clock=self.clock,
            session=self._session,
            external_url=config.server.external_url,
            webhook_headers=secrets.webhook_headers,
            robot_secrets=secrets.robots,
            owns=share.alerts_on,
            leads=share.alerts_monitor,
        )
        self.credentials_recorder.add_listener(
            wiring.CredentialAlerts(alerts, ready=self._is_ready, spawn=self._background.spawn)
        )
        await alerts.start()
        alerts.subscribe(self.bus)
        budget.subscribe(self.bus)
        # Credentials before the first poll (bounded: a source that is down is retried in the
        # background, and the polls meanwhile fail as `auth`).
        await self.credentials.prepare(providers, self._session)
        await self.credentials.commit(providers)
        poller.resume(self.registry)
        await share.start(poller, alerts)
        await tracker.register_many(config.tasks)
        # Alert whatever was stored but not yet alerted when the last life ended.
        await alerts.sweep(self.registry.tasks())
        poller.start()
        parts = Running(self.credentials, tracker, budget, client, poller, alerts, self.metrics)
        self._reloader = Reloader(config, parts, self.reload_hooks, self._session, self._adopt)
        self._background.every(
            {self.purge: PURGE_EVERY_SECONDS, self.sweep_alerts: ALERT_SWEEP_SECONDS}
        )
        self._started = True
        log.info(
            "daemon_started",
            tasks=len(self.registry),
            accounts=sorted(accounts),
            store=str(store),
            replica=share.replica_id,
        )

    async def stop(self) -> None:
        self._started = False
        await self._background.cancel()  # periodic work first
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
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        self._background.spawn(self.reload())

    async def reload(self) -> ReloadResult:
        """Re-read the config file: validate everything, then swap; or change nothing."""
        if self._reloader is None or self.config_path is None:
            return ReloadResult(False, ("the daemon was not started from a file",))
        return await self._reloader.reload(self.config_path)

    def _adopt(self, config: Config, secrets: ResolvedSecrets) -> None:
        """The configuration in force (at start, or reloaded): the daemon's own share of it."""
        set_secrets(secrets.values())
        self._keys = wiring.Keys.of(config, secrets)
        self.config = config

    async def purge(self) -> list[Any]:
        """Forget ended and removed tasks older than the retention, with their series."""
        try:
            return await self.tracker.purge(self.clock() - self.config.storage.retention)
        except StoreError as exc:
            log.error("purge_failed", error=str(exc))
            return []

    async def sweep_alerts(self) -> None:
        wiring.feed_budget(self.alerts, self.budget, self.poller, self.share)
        await self.alerts.sweep(self.registry.tasks())

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
            metrics=wiring.MetricsPort(self.exposition, self.metrics, self.state_view),
            callbacks=self.share.writer(),
            clock=self.clock,
            max_body_bytes=self._running_config.server.max_body_bytes,
            shared_store=None if self.share.alone else self._store,
        )

    def account_names(self) -> Mapping[str, Site]:
        return self.budget.account_names()

    def api_token(self) -> str | None:
        return self._keys.api_token

    def callback_key(self) -> str | None:
        return self._keys.callback_key

    def tuikit_token(self) -> str | None:
        return self._keys.tuikit_token

    def callback_app_keys(self) -> Mapping[int, str] | None:
        return self._keys.callback_app_keys

    def callback_settings(self) -> CallbacksConfig:
        return self.config.callbacks

    def state_view(self) -> StateView:
        return wiring.state_view(self.config, self.registry, self.budget, self.poller, self.share)
