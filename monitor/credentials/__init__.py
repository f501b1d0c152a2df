"""Tencent Cloud credentials per account: the sources of docs/configuration.md, the ``auto`` chain,
STS roles and background refresh. The poll step reads ``CredentialProvider.current()``."""

from __future__ import annotations

from monitor.credentials.base import (
    AUTO,
    CHAIN_ORDER,
    CODE_NO_CREDENTIALS,
    CODE_UNAVAILABLE,
    CredentialProvider,
    CredentialsError,
    Issued,
    NotPresent,
    Source,
)
from monitor.credentials.chain import ChainSource, NoCredentials
from monitor.credentials.factory import new_provider, new_source, read_static, resolve_once
from monitor.credentials.observe import RefreshRecorder
from monitor.credentials.providers import CredentialSet, ProviderPlan
from monitor.credentials.refresh import RefreshEvent, RefreshingProvider
from monitor.credentials.use import credentials_for_call

__all__ = [
    "AUTO",
    "CHAIN_ORDER",
    "CODE_NO_CREDENTIALS",
    "CODE_UNAVAILABLE",
    "ChainSource",
    "CredentialProvider",
    "CredentialSet",
    "CredentialsError",
    "Issued",
    "NoCredentials",
    "NotPresent",
    "ProviderPlan",
    "RefreshEvent",
    "RefreshRecorder",
    "RefreshingProvider",
    "Source",
    "credentials_for_call",
    "new_provider",
    "new_source",
    "read_static",
    "resolve_once",
]
