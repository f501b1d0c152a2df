"""What every credential source gives and how it fails (docs/configuration.md).

A source answers with an ``Issued`` record: the credentials, which source answered, and when
they expire (None for permanent keys). A source that is not configured or not present here
raises ``NotPresent``, which lets the ``auto`` chain move on; one that is present but fails
raises ``CredentialsError``. Messages name sources, variables, files and endpoints, never a
secret value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from monitor.secrets import Credentials

STATIC = "static"
ENV = "env"
OIDC = "oidc"
PROFILE = "profile"
CVM_ROLE = "cvm_role"
AUTO = "auto"
# The order of docs/configuration.md: containers first, the node's role last.
CHAIN_ORDER: tuple[str, ...] = (STATIC, ENV, OIDC, PROFILE, CVM_ROLE)
MODES: tuple[str, ...] = (AUTO, *CHAIN_ORDER)
ROLE_SUFFIX = "+role"
# The code of a poll that could not be sent for want of credentials; it shares the `code`
# label space with Tencent's codes and the client's Transport.* codes, and counts as `auth`.
CODE_UNAVAILABLE = "Credentials.Unavailable"
# The same, when no source of the account's chain is present at all: nothing to send, and
# nothing Tencent Cloud could have rejected (alert RecordingMonitorNoCredentials).
CODE_NO_CREDENTIALS = "Credentials.NotFound"


class CredentialsError(Exception):
    """Credentials could not be obtained from ``source``; the message says why."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.reason = message


class NotPresent(CredentialsError):
    """The source is not configured or not available on this machine."""


@dataclass(frozen=True, slots=True)
class Issued:
    """Credentials as a source gave them. ``expires_at`` is a unix time; None never expires.

    ``extra_secrets`` are other secret values used to get them (a web identity token, the base
    keys of an assumed role): the log redactor hides those too.
    """

    credentials: Credentials
    source: str
    expires_at: float | None = None
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def temporary(self) -> bool:
        return self.expires_at is not None

    def secret_values(self) -> list[str]:
        return [*self.credentials.secret_values(), *(v for v in self.extra_secrets if v)]


class Source(Protocol):
    """One place credentials come from. ``fetch`` does all its I/O on ``session`` (or in a
    worker thread for files) and never blocks the event loop."""

    @property
    def name(self) -> str: ...

    async def fetch(self, session: aiohttp.ClientSession) -> Issued: ...


class CredentialProvider(Protocol):
    """An account's credentials for the poll step.

    ``current`` never waits: the credentials in use, or None when there are none or they
    expired. ``get`` waits only when ``current`` would answer None, for at most one refresh
    attempt, and raises ``CredentialsError`` when that fails too.
    """

    @property
    def account(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def expires_at(self) -> float | None: ...

    def current(self) -> Credentials | None: ...

    async def get(self) -> Credentials: ...

    async def start(self, session: aiohttp.ClientSession) -> None: ...

    async def stop(self) -> None: ...
