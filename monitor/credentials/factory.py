"""One place that turns an account's configuration into its credential provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

from monitor.config.accounts import AccountConfig
from monitor.credentials.base import (
    AUTO,
    CHAIN_ORDER,
    CVM_ROLE,
    ENV,
    OIDC,
    PROFILE,
    STATIC,
    CredentialsError,
    Issued,
    Source,
)
from monitor.credentials.chain import ChainSource
from monitor.credentials.cvm_role import CvmRoleSource
from monitor.credentials.env import EnvSource
from monitor.credentials.oidc import OidcSource
from monitor.credentials.profile import ProfileSource, default_paths
from monitor.credentials.refresh import RefreshingProvider, RefreshObserver
from monitor.credentials.role import AssumeRoleSource
from monitor.credentials.static import StaticSource
from monitor.credentials.sts import RoleSession, Sts
from monitor.secrets import Credentials, SecretError
from monitor.trtc.client import Endpoint


def read_static(
    name: str, account: AccountConfig, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """The account's own keys when it uses them (``resolve_secrets`` does the same for every
    secret of a configuration); SecretError names a missing one by key and source."""
    if not account.uses_static:
        return None
    secret_id = account.secret_id_source(name).require(environ)
    secret_key = account.secret_key_source(name).require(environ)
    token = account.token_source(name).resolve(environ)
    return Credentials(secret_id.get(), secret_key.get(), token)


def new_source(
    account: AccountConfig,
    static: Credentials | None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> Source:
    """The source (or chain) the account names, wrapped in AssumeRole when it has a role_arn.

    ``static`` is what ``resolve_secrets`` read for the account (None when it has no keys);
    ``environ`` and ``home`` default to the process's.
    """
    sts = Sts(Endpoint.parse(account.sts_endpoint), clock=clock)
    duration = int(account.role_duration)

    def make(mode: str) -> Source:
        if mode == STATIC:
            return StaticSource(static)
        if mode == ENV:
            return EnvSource(environ)
        if mode == OIDC:
            return OidcSource(sts, account.role_session_name, duration, environ)
        if mode == PROFILE:
            return ProfileSource(account.profile, default_paths(home))
        if mode == CVM_ROLE:
            return CvmRoleSource(account.metadata_endpoint)
        raise ValueError(f"unknown credentials source {mode!r}")

    if account.credentials == AUTO:
        source: Source = ChainSource([make(m) for m in CHAIN_ORDER if m != STATIC or static])
    else:
        source = make(account.credentials)
    if account.role_arn:
        role = RoleSession(account.role_arn, account.role_session_name, duration)
        source = AssumeRoleSource(source, role, sts)
    return source


def new_provider(
    name: str,
    account: AccountConfig,
    static: Credentials | None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    clock: Callable[[], float] = time.time,
    observer: RefreshObserver | None = None,
) -> RefreshingProvider:
    source = new_source(account, static, environ=environ, home=home, clock=clock)
    return RefreshingProvider(name, source, clock=clock, observer=observer)


async def resolve_once(
    name: str,
    account: AccountConfig,
    session: aiohttp.ClientSession,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    wait: float = 30.0,
) -> Issued:
    """One resolution through the account's chain (the ``credentials`` and ``describe``
    commands); CredentialsError says what was tried and why nothing answered."""
    try:
        static = read_static(name, account, environ)
    except SecretError as exc:
        raise CredentialsError("static", str(exc)) from None
    source = new_source(account, static, environ=environ, home=home)
    try:
        return await asyncio.wait_for(source.fetch(session), wait)
    except TimeoutError:
        raise CredentialsError(source.name, f"no answer within {wait:g}s") from None
