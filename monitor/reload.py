"""A reload: everything read and checked before anything changes, then swapped at once.

A reload is one serialised operation (SIGHUP and ``POST /-/reload`` share it): a
:class:`Reloader` runs one at a time. :func:`plan_reload` reads the file, resolves its
secrets, makes (without starting) the credential providers it names, has every
:class:`ReloadHook` read what it reads, and stores the file's static tasks; any failure raises
and leaves the running configuration whole. The plan is then put in force on the running parts,
a step that cannot fail half-way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import structlog

from monitor.accounts import AccountRuntime, build_accounts
from monitor.alerts.engine import AlertEngine
from monitor.budget import Budget
from monitor.config import Config, ConfigError, ResolvedSecrets, load_config, resolve_secrets
from monitor.credentials import CredentialSet, ProviderPlan, RefreshRecorder
from monitor.http.ports import ReloadResult
from monitor.metrics import MonitorMetrics
from monitor.poller import Poller
from monitor.store.base import StoreError
from monitor.tracker import PendingRegistrations, Tracker
from monitor.trtc.client import TrtcClient

__all__ = [
    "RESTART_KEYS",
    "ReloadHook",
    "ReloadPlan",
    "Reloader",
    "Running",
    "plan_reload",
    "restart_required",
]

log = structlog.get_logger("monitor.daemon")


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


def restart_required(old: Config, new: Config) -> tuple[str, ...]:
    """The keys whose change a reload cannot apply to a running daemon."""
    return tuple(name for name, value in RESTART_KEYS if value(old) != value(new))


class ReloadHook(Protocol):
    """Something read again with every reload (the listeners' web configuration files):
    ``prepare`` reads and checks (ConfigError: the reload is refused, nothing changed), the
    call it returns puts the result in force once the reload goes ahead."""

    async def prepare(self, config: Config) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Everything a reload puts in force, read and checked."""

    config: Config
    secrets: ResolvedSecrets
    providers: ProviderPlan
    accounts: Mapping[str, AccountRuntime]
    commits: list[Callable[[], None]]
    pending: PendingRegistrations


async def plan_reload(
    path: Path,
    credentials: CredentialSet,
    hooks: Iterable[ReloadHook],
    tracker: Tracker,
) -> ReloadPlan:
    """Read and check everything a reload of ``path`` needs. Raises ConfigError, ValueError or
    StoreError; then nothing is in force and nothing else changed."""
    config = await asyncio.to_thread(load_config, path)
    secrets = resolve_secrets(config)
    # New providers are made here but started only once the reload goes ahead.
    providers = credentials.plan(config, secrets)
    accounts = build_accounts(config, providers.providers)
    commits = [await hook.prepare(config) for hook in hooks]
    # Static tasks are stored before anything is swapped; applied after the swap, when their
    # accounts exist. A failed write leaves everything as it was.
    pending = await tracker.store_registrations(config.tasks)
    return ReloadPlan(config, secrets, providers, accounts, commits, pending)


@dataclass(frozen=True, slots=True)
class Running:
    """The running parts a reload reconfigures."""

    credentials: CredentialSet
    tracker: Tracker
    budget: Budget
    client: TrtcClient
    poller: Poller
    alerts: AlertEngine
    metrics: MonitorMetrics

    @property
    def recorder(self) -> RefreshRecorder:
        observer = self.credentials.observer
        assert isinstance(observer, RefreshRecorder)
        return observer


class Reloader:
    """Re-reads the configuration file, one reload at a time: validate everything, then swap;
    or change nothing. ``adopt`` is how the daemon takes the new configuration and secrets.
    The file is named at each reload: the one the daemon is given then."""

    def __init__(
        self,
        config: Config,
        parts: Running,
        hooks: Iterable[ReloadHook],
        session: aiohttp.ClientSession,
        adopt: Callable[[Config, ResolvedSecrets], None],
    ) -> None:
        self._config = config  # in force now
        self._started_with = config  # what the restart-only keys still come from
        self._parts = parts
        self._hooks = hooks
        self._session = session
        self._adopt = adopt
        self._lock = asyncio.Lock()

    async def reload(self, path: Path) -> ReloadResult:
        async with self._lock:
            return await self._reload(path)

    async def _reload(self, path: Path) -> ReloadResult:
        parts = self._parts
        try:
            plan = await plan_reload(path, parts.credentials, self._hooks, parts.tracker)
        except ConfigError as exc:
            return self._failed(list(exc.errors))
        except (ValueError, StoreError) as exc:
            return self._failed([str(exc)])
        restart = restart_required(self._started_with, plan.config)
        await parts.credentials.prepare(plan.providers, self._session)
        self._swap(plan)
        for commit in plan.commits:
            commit()
        await parts.credentials.commit(plan.providers)
        await parts.tracker.apply_registrations(plan.pending)
        metrics = parts.metrics
        metrics.config_reload_ok.set(1)
        metrics.config_reload_time.set(time.time())
        if restart:
            log.warning("config_reload_needs_restart", keys=list(restart))
        log.info("config_reloaded", path=str(path), restart_required=list(restart))
        return ReloadResult(True, restart_required=restart)

    def _failed(self, errors: list[str]) -> ReloadResult:
        self._parts.metrics.config_reload_ok.set(0)
        log.error("config_reload_failed", errors=errors)
        return ReloadResult(False, tuple(errors))

    def _swap(self, plan: ReloadPlan) -> None:
        """Apply a validated configuration; nothing here can fail half-way."""
        parts, config, secrets = self._parts, plan.config, plan.secrets
        for gone in set(self._config.accounts) - set(config.accounts):
            parts.alerts.forget_account(gone)
            parts.recorder.forget(gone)
        replaced = parts.budget.configure(plan.accounts)
        parts.client.configure(
            timeout=config.polling.timeout, ended_codes=config.polling.ended_codes
        )
        parts.poller.configure(config.polling, replaced)
        parts.alerts.configure(
            config.alerts, secrets.webhook_headers, secrets.robots, config.server.external_url
        )
        self._config = config
        self._adopt(config, secrets)
