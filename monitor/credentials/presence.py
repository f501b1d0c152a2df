"""Which credential sources of an account are present on this machine, told without the network
(``check-config``): the standard variables, the TKE workload identity variables and the profile
files. The CVM role can only be told by asking the metadata service, which ``check-config``
does not do; ``trtc-monitor credentials`` does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config.accounts import AccountConfig
from monitor.credentials import env as env_source
from monitor.credentials import oidc
from monitor.credentials.base import (
    AUTO,
    CHAIN_ORDER,
    CVM_ROLE,
    ENV,
    OIDC,
    PROFILE,
    STATIC,
    CredentialsError,
    NotPresent,
)
from monitor.credentials.profile import default_paths, read_profile

__all__ = ["LocalPresence", "local_presence"]


@dataclass(frozen=True, slots=True)
class LocalPresence:
    """``found``: the first source of the chain present here (None: none). ``tried``: the
    sources before it, absent, with why. ``remote``: the source the chain reaches next that
    only the network can tell about (the CVM role's metadata endpoint), when no local source
    answered first."""

    found: str | None
    tried: tuple[NotPresent, ...]
    remote: str | None = None


def _absent_here(
    mode: str, account: AccountConfig, env: Mapping[str, str], home: Path | None
) -> NotPresent | None:
    if mode == ENV:
        return env_source.absent(env)
    if mode == OIDC:
        return oidc.absent(env)
    if mode == PROFILE:
        try:
            read_profile(default_paths(home), account.profile)
        except NotPresent as absent:
            return absent
        except CredentialsError:
            return None  # present but unusable: the daemon reports that failure itself
        return None
    return None


def local_presence(
    account: AccountConfig,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> LocalPresence:
    """The account's chain, in the order the daemon tries it, as far as this machine tells."""
    env = os.environ if environ is None else environ
    if account.credentials == AUTO:
        order = [m for m in CHAIN_ORDER if m != STATIC or account.uses_static]
    else:
        order = [account.credentials]
    tried: list[NotPresent] = []
    for mode in order:
        if mode == STATIC:
            return LocalPresence(STATIC, tuple(tried))
        if mode == CVM_ROLE:
            return LocalPresence(None, tuple(tried), remote=account.metadata_endpoint)
        absent = _absent_here(mode, account, env, home)
        if absent is None:
            return LocalPresence(mode, tuple(tried))
        tried.append(absent)
    return LocalPresence(None, tuple(tried))
