"""Every account's credential provider over the daemon's life and its reloads.

A reload is planned whole before anything is swapped (docs/configuration.md): ``plan``
keeps the provider of every account whose credential settings did not change (and with it the
credentials it holds) and makes new ones for the rest, without starting them. When the reload
goes ahead, ``prepare`` starts the new ones (until each has had its first attempt, bounded) and
``commit`` swaps them in and stops the ones they replace; when it fails, the plan is dropped
and nothing ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from monitor.config.accounts import AccountConfig
from monitor.config.model import Config
from monitor.config.secrets import ResolvedSecrets
from monitor.credentials.factory import new_provider
from monitor.credentials.refresh import RefreshingProvider, RefreshObserver
from monitor.secrets import Credentials

__all__ = ["CredentialSet", "ProviderPlan"]


def _settings(account: AccountConfig, static: Credentials | None) -> tuple[object, ...]:
    """What a provider is built from: equal settings, same provider."""
    return (
        account.credentials,
        account.profile,
        account.role_arn,
        account.role_session_name,
        account.role_duration,
        account.sts_endpoint,
        account.metadata_endpoint,
        static,
    )


@dataclass(slots=True)
class ProviderPlan:
    providers: dict[str, RefreshingProvider] = field(default_factory=dict)
    settings: dict[str, tuple[object, ...]] = field(default_factory=dict)
    new: list[RefreshingProvider] = field(default_factory=list)
    retired: list[RefreshingProvider] = field(default_factory=list)


class CredentialSet:
    """The providers in use, by account name."""

    def __init__(self, observer: RefreshObserver) -> None:
        self._observer = observer
        self._providers: dict[str, RefreshingProvider] = {}
        self._settings: dict[str, tuple[object, ...]] = {}

    @property
    def providers(self) -> Mapping[str, RefreshingProvider]:
        return self._providers

    @property
    def observer(self) -> RefreshObserver:
        return self._observer

    def plan(self, config: Config, secrets: ResolvedSecrets) -> ProviderPlan:
        plan = ProviderPlan()
        for name, account in config.accounts.items():
            static = secrets.accounts.get(name)
            settings = _settings(account, static)
            provider = self._providers.get(name)
            if provider is None or self._settings.get(name) != settings:
                provider = new_provider(name, account, static, observer=self._observer)
                plan.new.append(provider)
            plan.providers[name] = provider
            plan.settings[name] = settings
        kept = {id(p) for p in plan.providers.values()}
        plan.retired = [p for p in self._providers.values() if id(p) not in kept]
        return plan

    async def prepare(self, plan: ProviderPlan, session: aiohttp.ClientSession) -> None:
        for provider in plan.new:
            # Launched before any await, so a poll never meets a provider not yet started.
            provider.launch(session)
        await asyncio.gather(*(provider.first_attempt() for provider in plan.new))

    async def commit(self, plan: ProviderPlan) -> None:
        self._providers = plan.providers
        self._settings = plan.settings
        await asyncio.gather(*(provider.stop() for provider in plan.retired))

    async def stop(self) -> None:
        await asyncio.gather(*(provider.stop() for provider in self._providers.values()))
