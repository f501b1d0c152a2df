"""``role_arn``: any source's credentials, exchanged with STS ``AssumeRole`` for the role's.

The base credentials are resolved afresh each time, so a temporary base (a CVM role, OIDC)
is never used past its own expiry; the role's credentials expire on their own schedule."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from monitor.credentials.base import ROLE_SUFFIX, Issued, Source
from monitor.credentials.sts import DEFAULT_TIMEOUT, assume_role
from monitor.trtc.client import Endpoint


class AssumeRoleSource:
    def __init__(
        self,
        base: Source,
        *,
        role_arn: str,
        session_name: str,
        duration: int,
        sts_endpoint: Endpoint,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base = base
        self._role_arn = role_arn
        self._session_name = session_name
        self._duration = duration
        self._endpoint = sts_endpoint
        self._timeout = timeout
        self._clock = clock

    @property
    def name(self) -> str:
        return self._base.name + ROLE_SUFFIX

    async def fetch(self, session: aiohttp.ClientSession) -> Issued:
        base = await self._base.fetch(session)
        issued = await assume_role(
            session,
            endpoint=self._endpoint,
            base=base.credentials,
            role_arn=self._role_arn,
            session_name=self._session_name,
            duration=self._duration,
            source=base.source + ROLE_SUFFIX,
            request_timeout=self._timeout,
            clock=self._clock,
        )
        return Issued(
            issued.credentials,
            issued.source,
            issued.expires_at,
            (*issued.extra_secrets, *base.secret_values()),
        )
