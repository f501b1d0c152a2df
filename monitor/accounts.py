"""Accounts as the daemon uses them: endpoint, credentials, language and budget per account.

Built whole from a configuration and its resolved secrets before anything is swapped, so a
reload that fails half-way changes nothing (docs/configuration.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config.model import Config
from monitor.credentials import CredentialProvider
from monitor.ratelimit.factory import LimiterSettings
from monitor.trtc.client import Endpoint
from monitor.trtc.sites import Site

__all__ = ["AccountRuntime", "build_accounts"]


@dataclass(frozen=True, slots=True)
class AccountRuntime:
    name: str
    endpoint: Endpoint
    credentials: CredentialProvider  # read with credentials_for_call, never waited on
    language: str
    limiter: LimiterSettings
    site: Site = Site.INTERNATIONAL  # whose regions the account's tasks may use


def build_accounts(
    config: Config, providers: Mapping[str, CredentialProvider]
) -> Mapping[str, AccountRuntime]:
    """Every configured account, with the credential provider planned for it
    (``CredentialSet.plan``); raises ValueError for an endpoint that cannot be used."""
    accounts: dict[str, AccountRuntime] = {}
    for name, acc in config.accounts.items():
        accounts[name] = AccountRuntime(
            name=name,
            endpoint=Endpoint.parse(acc.endpoint),
            site=Site(acc.site),
            credentials=providers[name],
            language=acc.language,
            limiter=LimiterSettings(acc.rate_limit, acc.rate_window, acc.rate_guard),
        )
    return accounts
