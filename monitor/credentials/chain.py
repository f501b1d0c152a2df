"""``credentials: auto``: the first source that is configured or present answers.

Presence decides, not success: when the pod has TKE workload identity and its STS exchange
fails, the chain reports that failure rather than falling through to the node's CVM role,
which would silently monitor with another identity. The order is docs/configuration.md's: static,
env, oidc, profile, cvm_role."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from monitor.credentials.base import AUTO, CredentialsError, Issued, NotPresent, Source


class NoCredentials(CredentialsError):
    """No source of the chain is present; ``tried`` says why, source by source. Also raised
    by a provider whose last attempt found nothing (``source`` is then what the account is
    configured with, e.g. ``env`` or ``auto``)."""

    def __init__(self, tried: Sequence[NotPresent], source: str = AUTO) -> None:
        super().__init__(source, "no credentials found; tried " + describe_tried(tried))
        self.tried = tuple(tried)


def describe_tried(tried: Sequence[NotPresent]) -> str:
    """``env (TENCENTCLOUD_SECRET_ID not set); profile (no file at ...)``: names and reasons,
    never a secret (the reasons name variables, files and endpoints only)."""
    return "; ".join(f"{absent.source} ({absent.reason})" for absent in tried) or "nothing"


def absent_sources(exc: CredentialsError) -> tuple[NotPresent, ...] | None:
    """The sources an attempt tried when none of them was present; None when a present
    source failed (that is a failure to report, not an absence)."""
    if isinstance(exc, NoCredentials):
        return exc.tried
    if isinstance(exc, NotPresent):
        return (exc,)
    return None


class ChainSource:
    name = AUTO

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = tuple(sources)

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        tried: list[NotPresent] = []
        for source in self._sources:
            try:
                return await source.fetch(session)
            except NotPresent as absent:
                tried.append(absent)
        raise NoCredentials(tried)
